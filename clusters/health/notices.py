"""Chat notices of cluster reports: each application with a placement on the cluster is told,
through its own webhook (FC_WEBHOOK_URL_<SLUG>, deploys/notify.py), when a report opens and
when it closes.

As with a deploy's notices, nothing here can change or delay a check: `report_changed` runs
after the check's transaction committed (reports.open_report and reports.close queue it with
on_commit), does the cheap checks (no webhook set: nothing queued) and queues one
clusters.tasks.post_report_notice per application with the report's id and the slug, never
the URL. The task builds the message from the report as it is then, so it says the report's
own words; a 429 or 5xx is retried with backoff.
"""

from __future__ import annotations

import logging
import os

from celery import current_app
from django.urls import reverse

from clusters.models import ClusterReport, Placement
from deploys import notify

log = logging.getLogger(__name__)

NOTICE_TASK = "clusters.tasks.post_report_notice"
EMOJI = {True: ":rotating_light:", False: ":white_check_mark:"}


def affected(cluster_id: int) -> list[str]:
    """The slugs of the applications with a placement in use on the cluster."""
    return sorted(
        set(
            Placement.objects.filter(cluster_id=cluster_id, retired_at__isnull=True).values_list(
                "service__application__slug", flat=True
            )
        )
    )


def report_changed(report_id: int, cluster_id: int, opened: bool) -> None:
    """Queue a notice per application whose webhook is set. Never raises."""
    try:
        if not any(name.startswith(notify.VARIABLE_PREFIX) for name in os.environ):
            return
        for slug in affected(cluster_id):
            if notify.webhook_url(slug):
                send(report_id, slug, opened)
    except Exception:
        log.exception("cluster report #%s: could not queue the webhook notices", report_id)


def send(report_id: int, slug: str, opened: bool) -> None:
    current_app.send_task(NOTICE_TASK, args=[report_id, slug, opened])


def build_payload(report: ClusterReport, opened: bool) -> dict:
    """The message: {"text": ...} in Slack's mrkdwn, the report's own words escaped."""
    cluster = report.cluster
    what = report.get_kind_display()
    subject = f" on {notify.escape(report.subject)}" if report.subject else ""
    headline = f"{EMOJI[opened]} *cluster {notify.escape(cluster.name)}*: {what}{subject}"
    if opened:
        lines = [headline, notify.escape(notify.truncate(report.message))]
        said = report.detail.get("said") if isinstance(report.detail, dict) else ""
        if said:
            lines.append(notify.escape(notify.truncate(said)))
    else:
        lines = [f"{headline}: over", notify.escape(notify.truncate(report.closed_why))]
    base = notify.public_url()
    if base:
        link = base + reverse("cluster", args=[cluster.name])
        lines.append(f"<{link.replace('&', '&amp;')}|Open the cluster page>")
    return {"text": "\n".join(lines)}


def post_notice(report_id: int, slug: str, opened: bool, *, last_try: bool) -> None:
    report = ClusterReport.objects.select_related("cluster").filter(pk=report_id).first()
    if report is None:
        return
    news = "opened" if opened else "closed"
    notify.post(
        slug,
        build_payload(report, opened),
        f"cluster report #{report_id}",
        news,
        last_try=last_try,
    )
