"""What the dashboard and the deploy page show: who has the slot, how far it got, who waits
and until about when, and how the last deploy ended. The same few queries whatever the number
of applications or of deploys, one per kind of thing shown and each served by an index:
the applications (with their last finished deploy found by a subquery), the active deploys,
the rollout phases, the holders' rollouts and their legacy runs, the clusters' open reports,
the last finished deploys, and, once a minute, the durations behind the estimates. Fifty
people keep these pages open all day, and the history grows without end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from clusters import migration, targets
from clusters.models import Placement

from . import finished, sides, slot
from .cluster_page import open_reports_by_application
from .models import Application, Deploy, RolloutStatus, ServiceRollout
from .states import FINAL_STATES, MEANING, SLOT_STATES, Mode, State


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
    # The newest finished deploy: how the last one ended. The others are on the history page.
    last: Deploy | None = None
    typical_duration: timedelta | None = None
    # (cluster name, open reports) of the application's clusters that have any.
    cluster_reports: list[tuple[str, int]] = field(default_factory=list)

    @property
    def next_start(self) -> datetime | None:
        return self.waiting[0][1] if self.waiting else None

    @property
    def holder_at(self) -> tuple[int, Step] | None:
        """The holder's step under way (or the one that failed), numbered from 1: the row
        says where it is in a line; the whole bar is on the deploy's page."""
        for number, step in enumerate(self.holder_steps, start=1):
            if step.status in ("current", "failed"):
                return number, step
        return None


def board(applications=None) -> list[AppBoard]:
    apps = list(
        finished.with_finished_marks(
            applications if applications is not None else Application.objects.all()
        ).select_related("locked_by")
    )
    boards = {app.pk: AppBoard(application=app) for app in apps}
    if not boards:
        return []
    app_ids = list(boards)

    for deploy in slot.open_deploys(app_ids):
        entry = boards[deploy.application_id]
        deploy.application = entry.application  # already read, with its lock
        if deploy.state in SLOT_STATES:
            entry.holder = deploy
        else:
            entry.waiting.append((deploy, None))

    holders = [b.holder for b in boards.values() if b.holder]
    phases = phases_of(app_ids)
    rollouts = rollouts_of(holders)
    dual = sides.dual_services_of(rollouts)
    for app_id, reported in open_reports_by_application(app_ids).items():
        boards[app_id].cluster_reports = reported
    last = finished.last_finished(apps)
    typical = finished.typical_durations(apps)
    now = timezone.now()
    for app_id, entry in boards.items():
        entry.last = last.get(app_id)
        entry.typical_duration = typical[app_id]
        if entry.holder:
            entry.holder_steps = steps(
                entry.holder, phases.get(app_id, []), rollouts.get(entry.holder.pk)
            )
            entry.holder_dual = dual.get(entry.holder.pk, [])
        queued = [deploy for deploy, _ in entry.waiting]
        entry.waiting = list(zip(queued, estimated_starts(entry, now), strict=True))
    return [boards[app.pk] for app in apps]


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
