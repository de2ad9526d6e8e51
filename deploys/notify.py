"""Chat notifications: a Slack-compatible incoming webhook told when a deploy starts, fails,
rolls back or succeeds.

The webhook URL carries a token, so it lives only in the environment, never in the database,
a page, a task's arguments or a log line: ``FC_WEBHOOK_URL_<SLUG>`` (see `webhook_variable`).
It must be set for the web process and the workers alike: the process that moves the deploy
queues the post, a worker sends it.

Nothing here can change or delay a deploy. `deploy_moved` runs after the transition has
committed, does a cheap check (no variable set: nothing is queued) and queues the task
``deploys.tasks.post_webhook`` with the id of the transition's DeployEvent, so the message
says what happened in that move even if the deploy has moved on by the time it is sent. Any
error in queueing is logged and swallowed. `post_event` sends it: 2xx is done; 429, 5xx, a
timeout or no connection raise WebhookUnavailable for the task to retry with backoff; any
other answer is logged (application slug and status only) and dropped.
"""

import logging
import os
from urllib.parse import quote

import requests
from django.conf import settings
from django.db.models import F
from django.urls import reverse

from . import dispatch
from .models import Application, DeployEvent, secret_variable
from .states import FAILURE, MEANING, ROLLBACK, START, SUCCESS, State

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "FC_WEBHOOK_URL_"
POST_TASK = "deploys.tasks.post_webhook"
TIMEOUT_SECONDS = 5.0
# The transition's message is cut to this many characters in the chat message.
REASON_MAX_CHARS = 300

# What each state says when a deploy enters it lives in states.MEANING (its `said`).
# Left out: building, verifying, merging_to_default (steps along the way), queued.
_SAID = {state: meaning.said for state, meaning in MEANING.items() if meaning.said}
_EMOJI = {
    START: ":rocket:",
    FAILURE: ":x:",
    ROLLBACK: ":rewind:",
    SUCCESS: ":white_check_mark:",
}


class WebhookUnavailable(Exception):
    """The webhook did not take the message for now (429, 5xx, no answer): try again later.

    Its message names the application and what went wrong, never the URL.
    """


def webhook_variable(slug: str) -> str:
    """The environment variable holding an application's webhook URL: FC_WEBHOOK_URL_DEMO_SHOP."""
    return secret_variable(VARIABLE_PREFIX, slug)


def webhook_url(slug: str) -> str:
    """The application's webhook URL, or "" when none is set."""
    return os.environ.get(webhook_variable(slug), "").strip()


def kind_of(from_state: str, to_state: str) -> str | None:
    """start, failure, rollback or success for a move worth a message; None for the others."""
    said = _SAID.get(to_state)
    if said is None or from_state in said.unless_from:
        return None
    return said.kind


# ------------------------------------------------------------------------ after a transition


def deploy_moved(deploy_id: int, application_id: int, to_state: str) -> None:
    """Queue the webhook post for a committed move, if it is worth one. Never raises."""
    try:
        if to_state not in _SAID or not any(
            name.startswith(VARIABLE_PREFIX) for name in os.environ
        ):
            return
        slug = Application.objects.values_list("slug", flat=True).get(pk=application_id)
        if not webhook_url(slug):
            return
        event = (
            DeployEvent.objects.filter(deploy_id=deploy_id, to_state=to_state)
            .exclude(from_state=F("to_state"))  # notes on the timeline are not moves
            .order_by("-id")
            .first()
        )
        if event is None or kind_of(event.from_state, event.to_state) is None:
            return
        dispatch.send_task(POST_TASK, event.pk)
    except Exception:
        log.exception("deploy #%s: could not queue the webhook notification", deploy_id)


# ---------------------------------------------------------------------------- the message


def escape(text: str) -> str:
    """Text made safe for Slack: &, < and > are control characters there (links, mentions)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int = REASON_MAX_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def public_url() -> str:
    """FC_PUBLIC_URL (from settings if there, else the environment), without a trailing /."""
    url = getattr(settings, "FC_PUBLIC_URL", None) or os.environ.get("FC_PUBLIC_URL", "")
    url = url.strip().rstrip("/")
    return url if url.startswith(("http://", "https://")) else ""


def deploy_link(deploy_id: int) -> str:
    """The deploy page's address, or "" without FC_PUBLIC_URL."""
    base = public_url()
    if not base:
        return ""
    # Percent-encoding keeps |, < and > (which would break Slack's <url|label>) out of it.
    return quote(base + reverse("deploy", args=[deploy_id]), safe=":/?#[]@!$&'()*+,;=%~")


def build_payload(event: DeployEvent) -> dict:
    """The message for one state change: {"text": ...} in Slack's mrkdwn."""
    deploy = event.deploy
    kind = kind_of(event.from_state, event.to_state) or FAILURE
    words = _SAID[event.to_state].words if event.to_state in _SAID else "moved"
    if event.to_state == State.DEPLOYING and deploy.restore_of_id:
        words += f": redeploying the release of deploy #{deploy.restore_of_id}"
    person = deploy.requester.get_username()
    # Backticks in a branch name would end the code span early.
    branch = escape(deploy.branch.replace("`", "'"))
    headline = (
        f"{_EMOJI[kind]} *{escape(deploy.application.name)}*: deploy #{deploy.pk} "
        f"of `{branch}` by {escape(person)} {words}"
    )
    state_line = State(event.to_state).label
    if event.actor is not None and event.actor.get_username() != person:
        state_line += f" by {escape(event.actor.get_username())}"
    reason = truncate(event.message)
    if reason:
        state_line += f": {escape(reason)}"
    lines = [headline, state_line]
    link = deploy_link(deploy.pk)
    if link:
        lines.append(f"<{link.replace('&', '&amp;')}|Open deploy #{deploy.pk}>")
    return {"text": "\n".join(lines)}


# ------------------------------------------------------------------------------ the post


def post_event(event_id: int, *, last_try: bool) -> None:
    """Post one state change to its application's webhook.

    Raises WebhookUnavailable when worth trying again, unless this is the last try: then the
    trouble is logged and the message dropped. Logs name the slug and the status, never the URL.
    """
    event = (
        DeployEvent.objects.select_related("deploy__application", "deploy__requester", "actor")
        .filter(pk=event_id)
        .first()
    )
    if event is None:
        return
    deploy = event.deploy
    post(
        deploy.application.slug,
        build_payload(event),
        f"deploy #{deploy.pk}",
        event.to_state,
        last_try=last_try,
    )


def post(slug: str, payload: dict, what: str, news: str, *, last_try: bool) -> None:
    """Post a message of `news` (a state entered, a report opened) about `what` (a deploy, a
    cluster's report) to the application's webhook.

    2xx is done. Raises WebhookUnavailable when worth trying again (429, 5xx, a timeout, no
    connection), unless this is the last try: then the trouble is logged and the message
    dropped; any other answer is logged and dropped. Logs name `what`, the slug and the
    status, never the URL.
    """
    url = webhook_url(slug)
    if not url:
        log.warning(
            "%s: %s is not set in this worker: no webhook message sent",
            what,
            webhook_variable(slug),
        )
        return
    try:
        response = requests.post(url, json=payload, timeout=TIMEOUT_SECONDS)
    except ValueError as exc:  # requests' InvalidURL, MissingSchema...: its text holds the URL
        log.warning(
            "%s: %s is not a usable URL (%s): no webhook message sent",
            what,
            webhook_variable(slug),
            type(exc).__name__,
        )
        return
    except requests.Timeout:
        trouble = f"did not answer within {TIMEOUT_SECONDS:g} s"
    except requests.RequestException as exc:  # its text holds the URL: only the kind is said
        trouble = f"could not be reached ({type(exc).__name__})"
    else:
        status = response.status_code
        if 200 <= status < 300:
            log.info("%s: webhook of %s told (%s)", what, slug, news)
            return
        if status != 429 and status < 500:
            log.warning(
                "%s: the webhook of %s refused the message with HTTP %s: not retried",
                what,
                slug,
                status,
            )
            return
        trouble = f"answered HTTP {status}"
    if last_try:
        log.warning("%s: the webhook of %s %s: gave up after retrying", what, slug, trouble)
        return
    raise WebhookUnavailable(f"the webhook of {slug} {trouble}")
