"""What a poll of the live fragments costs when nothing changed: one indexed query and no
rendering. Fifty people keep the dashboard open all day and it polls every 2 s; nearly every
poll finds nothing new.

Each application has a change cursor: the latest of its row's changed_at (a save, a lock), its
deploys' updated_at (a move of state, a note on the timeline, a rollout's progress and a
lease renewal all set it) and its clusters' reports opened or closed. A poll's ETag is made of
the cursors, the person and the minute, and the page's script sends it back in If-None-Match:
the same ETag is a 304 with no body (views.py, by Django's `condition`).

Why the minute: the fragments say things that move with the clock alone. Starts about HH:MM
(the estimates) are minutes, so a new minute is a new ETag and every row comes again, once a
minute. The holder's "for 3 min 12 s" ticks in the browser between polls (static/js/live.js,
the same words as lib/durations.py). The minute is also the bound on anything the cursor does
not see (a legacy job's build number, a service moved to another phase): it shows within it.

When something changed, the dashboard's script says when it last asked (?since=, the token of
its last answer) and gets only the rows whose cursor is newer, less SLACK: a cursor is the
time of the write, and a write in a transaction that commits after the answer may be dated a
little before it (and the writer's clock may be a little behind). A row changed just before
the last answer comes again: a few bytes, and only when the ETag says something changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.db.models import F, OuterRef, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from builds.models import Build
from clusters.models import ClusterReport, Placement
from fatcontroller.prepared import Prepared

from . import roles
from .models import Application, Deploy

SLACK = timedelta(seconds=10)
SLACK_MICROS = int(SLACK.total_seconds() * 1_000_000)  # the cursors' unit


def minute() -> int:
    """The clock's part of the ETags: minutes since the epoch."""
    return int(timezone.now().timestamp() // 60)


def micros(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def _latest_deploy_change(application):
    return Subquery(
        Deploy.objects.filter(application=application)
        .order_by("-updated_at")
        .values("updated_at")[:1]
    )


def _latest_report_change(application):
    # A report's last change is its closing, else its opening; the dashboard shows counts.
    changed = Coalesce("closed_at", "opened_at")
    # From the reports to the clusters, not from each application's placements: reports
    # are few (none, most of the time), placements many, and this runs for every row.
    clusters = Placement.objects.filter(service__application=OuterRef(application))
    return Subquery(
        ClusterReport.objects.filter(cluster_id__in=clusters.values("cluster_id"))
        .annotate(changed=changed)
        .order_by("-changed")
        .values("changed")[:1]
    )


def _application_cursor(changed_at: str, application):
    # Coalesce: SQLite's (the embedded default's) greatest is NULL if any of them is.
    return Greatest(
        F(changed_at),
        Coalesce(_latest_deploy_change(application), F(changed_at)),
        Coalesce(_latest_report_change(application), F(changed_at)),
    )


@dataclass(frozen=True)
class BoardCursors:
    by_application: dict[int, datetime]
    minute: int  # of the answer: the rows said of it are for this minute
    etag: str
    # What the script sends back as ?since=: the minute and the time of the answer.
    token: str


def _board_cursors_query():
    return (
        Application.objects.order_by()
        .annotate(cursor=_application_cursor("changed_at", OuterRef("pk")))
        .values_list("pk", "cursor")
    )


def _deploy_cursors_query(*, pk: int, user_id: int):
    builds = Subquery(
        Build.objects.filter(deploy=OuterRef("pk"))
        .annotate(
            changed=Greatest(
                "created_at",
                Coalesce("started_at", "created_at"),
                Coalesce("heartbeat_at", "created_at"),
                Coalesce("finished_at", "created_at"),
            )
        )
        .order_by("-changed")
        .values("changed")[:1]
    )
    return (
        Deploy.objects.filter(pk=pk)
        .annotate(
            cursor=_application_cursor("application__changed_at", OuterRef("application_id")),
            builds_cursor=builds,
            granted=roles.granted_rank(get_user_model()(pk=user_id), OuterRef("application_id")),
        )
        .values_list("cursor", "builds_cursor", "granted")
    )


# Made once per process: compiling them costs more than running them (fatcontroller/prepared.py).
_BOARD_CURSORS = Prepared(_board_cursors_query)
_DEPLOY_CURSORS = Prepared(_deploy_cursors_query, "pk", "user_id")


def board_cursors(user) -> BoardCursors:
    """Every application's cursor, in one query. The dashboard's rows depend on the person
    only by whose deploys are marked theirs (data-mine): the ETag has their id, not their
    role (the queue form, which the role decides, is not in the live fragment)."""
    by_application = dict(_BOARD_CURSORS.rows())
    now_minute = minute()
    digest = hashlib.sha256(
        repr(sorted((pk, micros(c)) for pk, c in by_application.items())).encode()
    ).hexdigest()[:20]
    return BoardCursors(
        by_application=by_application,
        minute=now_minute,
        etag=f'"board-{getattr(user, "pk", 0)}-{now_minute}-{digest}"',
        token=f"{now_minute}-{micros(timezone.now())}",
    )


def changed_since(cursors: BoardCursors, since: str | None) -> set[int] | None:
    """The applications whose rows changed since the client's token; None: all of them (no
    token, one that does not parse, or of another minute)."""
    try:
        token_minute, asked_at = (int(part) for part in (since or "").split("-"))
    except ValueError:
        return None
    if token_minute != minute():
        return None
    after = asked_at - SLACK_MICROS
    return {pk for pk, c in cursors.by_application.items() if micros(c) > after}


def deploy_etag(user, pk: int) -> str | None:
    """The deploy page's ETag, in one query; None for no such deploy (the view's 404).

    What its fragment shows moves with the deploy (its state, notes, rollouts), with the
    deploys ahead of it (its place in the queue), with its application (the lock) and with
    its builds (a build's heartbeat, start and end); and its buttons with the person: who they
    are (their own deploy) and their role, read by a subquery in the same query."""
    found = _DEPLOY_CURSORS.rows(pk=pk, user_id=user.pk)
    if not found:
        return None
    [(cursor, builds_cursor, granted)] = found
    rank = roles.rank_of_granted(user, granted)
    built = micros(builds_cursor) if builds_cursor else 0
    return f'"deploy-{pk}-{user.pk}-{rank}-{minute()}-{micros(cursor)}-{built}"'
