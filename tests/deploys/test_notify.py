"""Chat notifications against a real HTTP server standing in for Slack's incoming webhook."""

import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from deploys import actions, dispatch, notify
from deploys.models import Application, Deploy, DeployEvent
from deploys.statemachine import transition
from deploys.states import Mode, State
from deploys.tasks import post_webhook
from tests.waiting import wait_until

TOKEN = "xoxb-SECRET-token-4f2a9c"
POST_TASK = "deploys.tasks.post_webhook"
VARIABLE = "FC_WEBHOOK_URL_DEMO_SHOP"


class SlackStandin:
    """Records every POST; answers each with the next of `answers` ("200", "500", "404",
    "429" or "hang"), then "200" once they run out. "hang" holds the request open until the
    test ends."""

    def __init__(self):
        self.received: list[dict] = []
        self.answers: list[str] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with standin._lock:
                    standin.received.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "json": json.loads(body),
                        }
                    )
                    answer = standin.answers.pop(0) if standin.answers else "200"
                if answer == "hang":
                    standin.release.wait(30)
                    return
                status = int(answer)
                text = {200: b"ok", 404: b"no_service", 429: b"rate_limited"}.get(status, b"")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/services/T0001/B0002/{TOKEN}"

    @property
    def texts(self) -> list[str]:
        return [r["json"]["text"] for r in self.received]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def slack(monkeypatch):
    with SlackStandin() as standin:
        monkeypatch.setenv(VARIABLE, standin.url)
        yield standin


@pytest.fixture(autouse=True)
def no_public_url(monkeypatch, settings):
    monkeypatch.delenv("FC_PUBLIC_URL", raising=False)
    if hasattr(settings, "FC_PUBLIC_URL"):
        del settings.FC_PUBLIC_URL


@pytest.fixture
def app(db):
    # No git work happens here: the steps the transitions queue are never run.
    return Application.objects.create(
        slug="demo-shop", name="Demo shop", git_remote_url="/nonexistent.git"
    )


@pytest.fixture
def moved(django_capture_on_commit_callbacks):
    """transition(), committed, so what runs after commit (the notification) runs."""

    def run(deploy, to_state, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            return transition(deploy.pk, to_state, **kw)[0]

    return run


def make_deploy(app, user, state, mode=Mode.DEPLOY, branch="feature/login", **kw) -> Deploy:
    return Deploy.objects.create(
        application=app, branch=branch, mode=mode, requester=user, state=state, **kw
    )


def webhook_tasks(sent_tasks) -> list[int]:
    return [arg for name, arg in sent_tasks.sent if name == POST_TASK]


def run_webhook_tasks(sent_tasks) -> None:
    """Run the queued webhook posts as a worker would (eager retries run at once), leaving
    the deploy's own steps queued. (Not through current_app.loader.import_default_modules(),
    which has Django configure logging again and so unhooks caplog.)"""
    for event_id in webhook_tasks(sent_tasks):
        sent_tasks.sent.remove((POST_TASK, event_id))
        # throw=False: with throw=True an eager Retry escapes instead of running the retry.
        result = post_webhook.apply(args=[event_id], throw=False)
        assert result.state == "SUCCESS", result.traceback


@pytest.fixture(autouse=True)
def no_secret_in_logs(caplog):
    """Whatever a test does, the webhook's token never reaches a log line."""
    caplog.set_level(logging.INFO)
    yield
    assert TOKEN not in caplog.text
    assert "/services/T0001" not in caplog.text


# ------------------------------------------------------------------------- the variable


def test_the_variable_follows_the_hook_secret_rule(app):
    assert notify.webhook_variable("demo-shop") == VARIABLE
    assert notify.webhook_variable("a.b-c_9") == "FC_WEBHOOK_URL_A_B_C_9"
    for slug in ("demo-shop", "x.y", "Shop_2"):
        app.slug = slug
        assert notify.webhook_variable(slug).removeprefix("FC_WEBHOOK_URL_") == (
            app.hook_secret_variable.removeprefix("FC_HOOK_SECRET_")
        )


# ----------------------------------------------------------------------- what is said


SAID = [
    # mode, from, to, headline ending, state line start
    (Mode.DEPLOY, State.QUEUED, State.MERGING, ":rocket:", "started", "Merging"),
    (Mode.DEPLOY, State.BUILDING, State.BUILD_FAILED, ":x:", "failed to build", "Build failed"),
    (Mode.DEPLOY, State.MERGING, State.MERGE_CONFLICT, ":x:", "has a merge conflict", None),
    (Mode.DEPLOY, State.DEPLOYING, State.FAILED, ":x:", "failed", "Failed"),
    (Mode.DEPLOY, State.ROLLING_BACK, State.ROLLBACK_FAILED, ":x:", "failed, and its "
     "rollback failed too", "Rollback failed"),
    (Mode.DEPLOY, State.BUILD_FAILED, State.ABANDONED, ":x:", "was abandoned", "Abandoned"),
    (Mode.DEPLOY, State.VERIFYING, State.ROLLING_BACK, ":rewind:", "is rolling back", None),
    (Mode.DEPLOY, State.ROLLING_BACK, State.ROLLED_BACK, ":rewind:", "was rolled back", None),
    (Mode.DEPLOY, State.MERGING_TO_DEFAULT, State.SUCCEEDED, ":white_check_mark:",
     "succeeded", "Succeeded"),
    (Mode.MERGE_ONLY, State.MERGING_TO_DEFAULT, State.MERGED, ":white_check_mark:",
     "was merged (nothing deployed)", "Merged"),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "from_state", "to_state", "emoji", "words", "label"), SAID)
def test_each_move_worth_telling_posts_its_message(
    app, user, slack, moved, sent_tasks, monkeypatch, mode, from_state, to_state, emoji, words,
    label,
):  # fmt: skip
    monkeypatch.setenv("FC_PUBLIC_URL", "https://fc.example.com/")
    deploy = make_deploy(app, user, from_state, mode)
    moved(deploy, to_state, message="the reason it moved")

    event = deploy.events.get(to_state=to_state)
    assert webhook_tasks(sent_tasks) == [event.pk]
    assert not slack.received  # nothing is posted until the task runs
    run_webhook_tasks(sent_tasks)

    [request] = slack.received
    assert request["path"] == f"/services/T0001/B0002/{TOKEN}"
    assert request["content_type"] == "application/json"
    assert set(request["json"]) == {"text"}
    assert request["json"]["text"].split("\n") == [
        f"{emoji} *Demo shop*: deploy #{deploy.pk} of `feature/login` by alice {words}",
        f"{label or State(to_state).label}: the reason it moved",
        f"<https://fc.example.com/deploys/{deploy.pk}/|Open deploy #{deploy.pk}>",
    ]


def test_a_restore_starts_when_it_takes_the_slot_into_deploying(
    app, user, slack, moved, sent_tasks
):
    release = make_deploy(app, user, State.SUCCEEDED, branch="feature/old")
    deploy = make_deploy(app, user, State.QUEUED, Mode.RESTORE, branch="main", restore_of=release)
    moved(deploy, State.DEPLOYING, message="took the merge slot")
    run_webhook_tasks(sent_tasks)
    assert slack.texts == [
        f":rocket: *Demo shop*: deploy #{deploy.pk} of `main` by alice started: redeploying "
        f"the release of deploy #{release.pk}\nDeploying: took the merge slot"
    ]
    assert (dispatch.STEP_TASKS[State.DEPLOYING], deploy.pk) in sent_tasks.sent  # the step too


def test_a_cancel_after_start_is_told_with_who_cancelled(
    app, user, other_user, slack, moved, sent_tasks
):
    deploy = make_deploy(app, user, State.BUILDING)
    moved(deploy, State.CANCELLED, actor=other_user, message="cancelled from the deploy page")
    run_webhook_tasks(sent_tasks)
    assert slack.texts == [
        f":x: *Demo shop*: deploy #{deploy.pk} of `feature/login` by alice was cancelled\n"
        "Cancelled by bob: cancelled from the deploy page"
    ]


@pytest.mark.parametrize(
    ("mode", "from_state", "to_state"),
    [
        (Mode.DEPLOY, State.QUEUED, State.CANCELLED),  # never started: nobody was told
        (Mode.DEPLOY, State.MERGING, State.BUILDING),
        (Mode.DEPLOY, State.BUILD_FAILED, State.BUILDING),
        (Mode.DEPLOY, State.BUILDING, State.DEPLOYING),  # an ordinary rollout: started already
        (Mode.DEPLOY, State.DEPLOYING, State.VERIFYING),
        (Mode.DEPLOY, State.VERIFYING, State.MERGING_TO_DEFAULT),
    ],
)
def test_steps_along_the_way_queue_nothing(
    app, user, slack, moved, sent_tasks, mode, from_state, to_state
):
    deploy = make_deploy(app, user, from_state, mode)
    moved(deploy, to_state, message="on we go")
    assert webhook_tasks(sent_tasks) == []
    assert deploy.events.filter(to_state=to_state).exists()  # the move itself happened


def test_branch_names_and_reasons_are_escaped_for_slack(app, user, slack, moved, sent_tasks):
    branch = "<script>alert('x')</script>&co"
    deploy = make_deploy(app, user, State.QUEUED, branch=branch)
    moved(deploy, State.MERGING, message="ping <!channel> and see <https://evil.example|here>")
    run_webhook_tasks(sent_tasks)
    [text] = slack.texts
    assert "of `&lt;script&gt;alert('x')&lt;/script&gt;&amp;co` by alice" in text
    assert "ping &lt;!channel&gt; and see &lt;https://evil.example|here&gt;" in text
    # Without FC_PUBLIC_URL there is no link: no < or > of Slack's own syntax is left.
    assert "<" not in text and ">" not in text


def test_a_long_reason_is_cut(app, user, slack, moved, sent_tasks):
    deploy = make_deploy(app, user, State.DEPLOYING)
    moved(deploy, State.FAILED, message="x" * 5000)
    run_webhook_tasks(sent_tasks)
    reason = slack.texts[0].split("\n")[1].removeprefix("Failed: ")
    assert len(reason) == notify.REASON_MAX_CHARS
    assert reason.endswith("…")


def test_the_end_of_one_deploy_is_told_before_the_start_of_the_next(
    app, user, slack, moved, sent_tasks
):
    first = make_deploy(app, user, State.MERGING_TO_DEFAULT)
    second = make_deploy(app, user, State.QUEUED, branch="feature/next")
    moved(first, State.SUCCEEDED, message="main is now abc")
    second.refresh_from_db()
    assert second.state == State.MERGING  # the slot went on
    run_webhook_tasks(sent_tasks)
    assert [text.split("\n")[0] for text in slack.texts] == [
        f":white_check_mark: *Demo shop*: deploy #{first.pk} of `feature/login` by alice succeeded",
        f":rocket: *Demo shop*: deploy #{second.pk} of `feature/next` by alice started",
    ]


def test_the_message_tells_the_move_it_was_queued_for_even_if_the_deploy_moved_on(
    app, user, slack, moved, sent_tasks
):
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING, message="took the merge slot")
    moved(deploy, State.BUILDING, message="candidate made")
    moved(deploy, State.BUILD_FAILED, message="unit tests failed")
    run_webhook_tasks(sent_tasks)
    assert [text.split("\n")[1] for text in slack.texts] == [
        "Merging: took the merge slot",
        "Build failed: unit tests failed",
    ]


def test_a_whole_merge_only_deploy_driven_through_the_pipeline_tells_start_and_success(
    application, user, drive, django_capture_on_commit_callbacks, monkeypatch
):
    with SlackStandin() as slack:
        monkeypatch.setenv(VARIABLE, slack.url)
        with django_capture_on_commit_callbacks(execute=True):
            deploy = actions.queue_deploy(
                application=application.slug,
                branch="feature/clean-merge",
                mode=Mode.MERGE_ONLY,
                requester=user,
            )
        drive()  # runs the steps and the webhook posts, as a worker would
        deploy.refresh_from_db()
        assert deploy.state == State.MERGED
        assert [text.split("\n")[0] for text in slack.texts] == [
            f":rocket: *Demo shop*: deploy #{deploy.pk} of `feature/clean-merge` by alice started",
            f":white_check_mark: *Demo shop*: deploy #{deploy.pk} of `feature/clean-merge` by "
            "alice was merged (nothing deployed)",
        ]


# ----------------------------------------------------------------- when nothing is sent


def test_without_the_variable_nothing_is_queued(app, user, moved, sent_tasks, monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with SlackStandin() as other:
        # Another application's webhook is set: this one's still is not.
        monkeypatch.setenv("FC_WEBHOOK_URL_OTHER_APP", other.url)
        deploy = make_deploy(app, user, State.QUEUED)
        moved(deploy, State.MERGING, message="took the merge slot")
        assert sent_tasks.sent == [(dispatch.STEP_TASKS[State.MERGING], deploy.pk)]
        moved(deploy, State.FAILED, message="no such branch")
        assert webhook_tasks(sent_tasks) == []
        assert other.received == []


def test_a_variable_removed_before_the_worker_runs_sends_nothing(
    app, user, slack, moved, sent_tasks, monkeypatch, caplog
):
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING)
    assert len(webhook_tasks(sent_tasks)) == 1
    monkeypatch.delenv(VARIABLE)
    run_webhook_tasks(sent_tasks)
    assert slack.received == []
    assert f"{VARIABLE} is not set in this worker" in caplog.text


# -------------------------------------------------------- the deploy is never affected


def test_a_failure_to_queue_the_message_never_reaches_the_state_machine(
    app, user, slack, moved, sent_tasks, monkeypatch, caplog
):
    steps = []

    def send_task(name, deploy_id):
        if name == POST_TASK:
            raise ConnectionError("broker down")
        steps.append((name, deploy_id))

    monkeypatch.setattr(dispatch, "send_task", send_task)
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING, message="took the merge slot")
    deploy.refresh_from_db()
    assert deploy.state == State.MERGING
    assert steps == [(dispatch.STEP_TASKS[State.MERGING], deploy.pk)]  # the step still went
    assert "could not queue the webhook notification" in caplog.text


def test_a_hanging_webhook_never_holds_up_the_transition(
    app, user, slack, moved, sent_tasks, monkeypatch, caplog
):
    slack.answers = ["hang", "hang", "200"]
    deploy = make_deploy(app, user, State.QUEUED)
    started = time.monotonic()
    moved(deploy, State.MERGING, message="took the merge slot")
    # The transition and everything after its commit are done before any HTTP call at all:
    # the post lives in its own task.
    assert time.monotonic() - started < notify.TIMEOUT_SECONDS
    assert slack.received == []
    assert (dispatch.STEP_TASKS[State.MERGING], deploy.pk) in sent_tasks.sent

    monkeypatch.setattr(notify, "TIMEOUT_SECONDS", 0.3)
    run_webhook_tasks(sent_tasks)  # times out twice, retried, then answered
    wait_until(lambda: len(slack.received) == 3, what="three attempts")
    assert len({json.dumps(r["json"]) for r in slack.received}) == 1  # the same message
    assert caplog.text.count("did not answer within 0.3 s") >= 2
    assert "webhook of demo-shop told (merging)" in caplog.text


def test_a_webhook_that_keeps_hanging_is_given_up(
    app, user, slack, moved, sent_tasks, monkeypatch, caplog
):
    slack.answers = ["hang"] * 10
    monkeypatch.setattr(notify, "TIMEOUT_SECONDS", 0.2)
    deploy = make_deploy(app, user, State.DEPLOYING)
    moved(deploy, State.FAILED, message="image missing")
    run_webhook_tasks(sent_tasks)
    attempts = 1 + post_webhook.max_retries
    wait_until(lambda: len(slack.received) == attempts, what="every attempt")
    assert "the webhook of demo-shop did not answer within 0.2 s: gave up after retrying" in (
        caplog.text
    )
    deploy.refresh_from_db()
    assert deploy.state == State.FAILED


# ------------------------------------------------------------------- answers and retries


@pytest.mark.parametrize("trouble", ["500", "429"])
def test_a_passing_error_is_retried_until_the_message_goes_through(
    app, user, slack, moved, sent_tasks, caplog, trouble
):
    slack.answers = [trouble, trouble, "200"]
    deploy = make_deploy(app, user, State.MERGING_TO_DEFAULT)
    moved(deploy, State.SUCCEEDED, message="main is now abc")
    run_webhook_tasks(sent_tasks)
    assert len(slack.received) == 3
    assert len({json.dumps(r["json"]) for r in slack.received}) == 1
    assert f"the webhook of demo-shop answered HTTP {trouble}" in caplog.text
    assert "webhook of demo-shop told (succeeded)" in caplog.text


def test_a_webhook_that_keeps_failing_is_given_up_after_the_last_retry(
    app, user, slack, moved, sent_tasks, caplog
):
    slack.answers = ["500"] * 20
    deploy = make_deploy(app, user, State.MERGING_TO_DEFAULT)
    moved(deploy, State.SUCCEEDED)
    run_webhook_tasks(sent_tasks)  # does not raise: a lost message is a warning, no more
    assert len(slack.received) == 1 + post_webhook.max_retries
    assert "answered HTTP 500: gave up after retrying" in caplog.text


def test_a_refusal_is_logged_without_the_url_and_not_retried(
    app, user, slack, moved, sent_tasks, caplog
):
    slack.answers = ["404", "200"]
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING)
    run_webhook_tasks(sent_tasks)
    assert len(slack.received) == 1
    [record] = [r for r in caplog.records if r.name == "deploys.notify"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert "demo-shop" in message and "HTTP 404" in message and "not retried" in message
    assert slack.url not in message and TOKEN not in message and "127.0.0.1" not in message


def test_an_unreachable_webhook_raises_a_retryable_error_that_holds_no_url(
    app, user, moved, sent_tasks, monkeypatch
):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(VARIABLE, f"http://127.0.0.1:{port}/services/T0001/B0002/{TOKEN}")
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING)
    [event_id] = webhook_tasks(sent_tasks)
    with pytest.raises(notify.WebhookUnavailable) as raised:
        notify.post_event(event_id, last_try=False)
    assert str(raised.value) == "the webhook of demo-shop could not be reached (ConnectionError)"
    # Nothing chained: Celery's traceback cannot show requests' error, which names the URL.
    assert raised.value.__context__ is None and raised.value.__cause__ is None


def test_a_malformed_variable_is_a_warning_naming_the_variable_only(
    app, user, moved, sent_tasks, monkeypatch, caplog
):
    monkeypatch.setenv(VARIABLE, f"hooks.slack.com/services/T0001/B0002/{TOKEN}")
    deploy = make_deploy(app, user, State.QUEUED)
    moved(deploy, State.MERGING)
    run_webhook_tasks(sent_tasks)
    assert f"{VARIABLE} is not a usable URL (MissingSchema)" in caplog.text


def test_the_task_is_sent_only_after_commit(app, user, slack, sent_tasks):
    deploy = make_deploy(app, user, State.QUEUED)
    with transaction.atomic():
        transition(deploy.pk, State.MERGING, message="took the merge slot")
        assert webhook_tasks(sent_tasks) == []
    # The test's own transaction never commits: nothing was queued, nothing posted.
    assert webhook_tasks(sent_tasks) == []
    assert DeployEvent.objects.filter(deploy=deploy, to_state=State.MERGING).exists()
    assert slack.received == []
