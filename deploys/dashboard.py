"""What the dashboard and the deploy page show: who has the slot, how far it got, who waits
and until about when. Read in a few queries that do not grow with the number of deploys
(two per application, each served by an index), because fifty people keep these pages
open all day and the history grows without end.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.utils import timezone

from clusters import migration, targets
from clusters.models import Placement

from . import sides
from .cluster_page import open_reports_by_application
from .models import Application, Deploy, RolloutStatus, ServiceRollout
from .states import FINAL_STATES, MEANING, SLOT_STATES, Mode, State

RECENT_DEPLOYS = 10
RECENT_FIELDS = (
    "application_id",
    "branch",
    "mode",
    "state",
    "started_at",
    "finished_at",
    "requester",
    "requester__username",
)
# Finished deploys whose durations make the estimate: enough to smooth, few enough to follow
# a change in the build's length.
DURATION_SAMPLE = 20
DURATIONS_KEPT_SECONDS = 60
# Ended before running long enough to say how long a deploy takes.
NOT_A_RUN = (State.CANCELLED, State.MERGE_CONFLICT)


@dataclass
class Step:
    label: str
    status: str  # done | current | failed | todo
    # A phase's placements out of all it touches, both sides of a dual-running service
    # counted ("3 of 4 out"); "" before the phase has rollout rows.
    count: str = ""


@dataclass
class AppBoard:
    application: Application
    holder: Deploy | None = None
    holder_steps: list[Step] = field(default_factory=list)
    # The holder's services that go out on both sides (legacy and ECS) while they migrate.
    holder_dual: list[sides.ServiceSides] = field(default_factory=list)
    waiting: list[tuple[Deploy, datetime | None]] = field(default_factory=list)
    recent: list[Deploy] = field(default_factory=list)
    typical_duration: timedelta | None = None
    # (cluster name, open reports) of the application's clusters that have any.
    cluster_reports: list[tuple[str, int]] = field(default_factory=list)


def board(applications=None) -> list[AppBoard]:
    apps = list(applications or Application.objects.select_related("locked_by"))
    boards = {app.pk: AppBoard(application=app) for app in apps}
    if not boards:
        return []
    app_ids = list(boards)

    active = (
        Deploy.objects.filter(application_id__in=app_ids, state__in=SLOT_STATES | {State.QUEUED})
        .select_related("requester", "application")
        .order_by("id")
    )
    for deploy in active:
        entry = boards[deploy.application_id]
        if deploy.state in SLOT_STATES:
            entry.holder = deploy
        else:
            entry.waiting.append((deploy, None))

    finished = Deploy.objects.filter(finished_at__isnull=False).order_by("-finished_at")
    holders = [b.holder for b in boards.values() if b.holder]
    phases = phases_of(app_ids)
    rollouts = rollouts_of(holders)
    for app_id, reported in open_reports_by_application(app_ids).items():
        boards[app_id].cluster_reports = reported
    now = timezone.now()
    for app_id, entry in boards.items():
        # One short query per application, each read from the (application, -finished_at)
        # index: ranking every finished deploy in one query costs more at 100,000 rows.
        of_app = finished.filter(application_id=app_id)
        entry.recent = list(
            of_app.select_related("requester").only(*RECENT_FIELDS)[:RECENT_DEPLOYS]
        )
        samples = _recent_durations(of_app, app_id)
        entry.typical_duration = (
            timedelta(seconds=statistics.median(d.total_seconds() for d in samples))
            if samples
            else None
        )
        if entry.holder:
            entry.holder_steps = steps(
                entry.holder, phases.get(app_id, []), rollouts.get(entry.holder.pk)
            )
            entry.holder_dual = sides.dual_services(rollouts.get(entry.holder.pk, []))
        queued = [deploy for deploy, _ in entry.waiting]
        entry.waiting = list(zip(queued, estimated_starts(entry, now), strict=True))
    return [boards[app.pk] for app in apps]


def _recent_durations(finished, app_id: int) -> list[timedelta]:
    """The durations behind the start estimates; they change slowly, so kept for a minute."""
    key = f"dashboard:durations:{app_id}"
    found = cache.get(key)
    if found is None:
        found = [
            end - start
            for start, end in finished.exclude(state__in=NOT_A_RUN)
            .filter(started_at__isnull=False)
            .values_list("started_at", "finished_at")[:DURATION_SAMPLE]
        ]
        cache.set(key, found, DURATIONS_KEPT_SECONDS)
    return found


def phases_of(app_ids) -> dict[int, list[int]]:
    """Each application's rollout phases, lowest first: those with a placement a deploy
    touches now (on the side its migration phase says)."""
    phases: dict[int, set[int]] = {}
    rows = (
        Placement.objects.filter(service__application_id__in=app_ids)
        .values_list(
            "service__application_id",
            "service__phase",
            "kind",
            "retired_at",
            "service__migration_phase__state",
        )
        .distinct()
    )
    for app_id, phase, kind, retired_at, migration_state in rows:
        if targets.drives(kind) and migration.touches(kind, retired_at, migration_state):
            phases.setdefault(app_id, set()).add(phase)
    return {app_id: sorted(found) for app_id, found in phases.items()}


def rollouts_of(deploys) -> dict[int, list[ServiceRollout]]:
    found: dict[int, list[ServiceRollout]] = {}
    if not deploys:
        return found
    rows = ServiceRollout.objects.filter(deploy__in=deploys).select_related(
        "placement__service", "placement__cluster"
    )
    for rollout in rows.order_by("phase", "id"):
        found.setdefault(rollout.deploy_id, []).append(rollout)
    return found


def steps(deploy: Deploy, phases: list[int], rollouts: list[ServiceRollout] | None) -> list[Step]:
    """The deploy's road from the slot to the end, each step done, current, failed or to do."""
    rollouts = rollouts or []
    phase_numbers = sorted({r.phase for r in rollouts}) or phases
    default_branch = deploy.application.default_branch
    labels: list[tuple[str, str]] = []  # (key, label)
    if deploy.mode != Mode.RESTORE:
        labels += [("merge", "Merge"), ("build", "Build")]
    if deploy.mode != Mode.MERGE_ONLY and phase_numbers:
        labels += [(f"phase-{p}", f"Phase {p}") for p in phase_numbers]
        labels.append(("soak", "Soak"))
    if deploy.mode != Mode.RESTORE:
        labels.append(("merge-to-default", f"Merge to {default_branch}"))

    current_key, failed = _where(deploy, rollouts, phase_numbers)
    keys = [key for key, _ in labels]
    position = keys.index(current_key) if current_key in keys else len(keys)
    result = []
    out_of = _counts(rollouts)
    for index, (key, label) in enumerate(labels):
        if deploy.state in FINAL_STATES and not failed:
            status = "done"
        elif index < position:
            status = "done"
        elif index == position:
            status = "failed" if failed else "current"
        else:
            status = "todo"
        result.append(Step(label, status, out_of.get(key, "")))
    return result


def _counts(rollouts: list[ServiceRollout]) -> dict[str, str]:
    """'n of m out' per phase step, every placement of the phase counted, both sides."""
    totals: dict[int, list[int]] = {}
    for rollout in rollouts:
        done_and_all = totals.setdefault(rollout.phase, [0, 0])
        done_and_all[0] += rollout.status == RolloutStatus.DONE
        done_and_all[1] += 1
    return {f"phase-{p}": f"{done} of {total} out" for p, (done, total) in totals.items()}


def _where(deploy: Deploy, rollouts: list[ServiceRollout], phases: list[int]) -> tuple[str, bool]:
    meaning = MEANING[State(deploy.state)]
    if meaning.bar == "phase":
        pending = [r.phase for r in rollouts if r.status != RolloutStatus.DONE]
        phase = min(pending) if pending else (phases[-1] if phases else 1)
        return f"phase-{phase}", meaning.bar_failed
    return meaning.bar, meaning.bar_failed


def estimated_starts(entry: AppBoard, now: datetime) -> list[datetime | None]:
    """About when each waiting deploy takes the slot: the holder's remaining time, then one
    typical run per deploy ahead. Unknown without history, or while the queue is locked."""
    typical = entry.typical_duration
    if typical is None or entry.application.locked:
        return [None] * len(entry.waiting)
    start = now
    if entry.holder and entry.holder.started_at:
        start = max(now, entry.holder.started_at + typical)
    estimates = []
    for _ in entry.waiting:
        estimates.append(start)
        start += typical
    return estimates
