"""An application's migration plan as its page and its API show it: each phase with its
services, where each runs now, the health of each side over its last deploys, what blocks the
next move and the proof so far; the moves made; and the share of processes on ECS after each.

Everything is read from the database, in a fixed number of queries plus the rules' own for
each phase (clusters.migration.blockers and proof_of): a page must not wait on AWS or Jenkins.
The rules are the rules module's; this one only gathers what they say for people to read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import F, Window
from django.db.models.functions import DenseRank
from django.utils import timezone

from clusters import migration
from clusters.migration import Proof
from clusters.models import (
    MigrationMove,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Service,
)

from . import roles
from .models import Application, RolloutStatus, ServiceRollout

S = MigrationState
R = RolloutStatus

# How many of a service's newest deploys its health counts.
HEALTH_DEPLOYS = 5
# States in which a phase's services run on ECS at all, and on ECS alone.
ON_ECS = frozenset({S.DUAL_RUNNING, S.CUT_OVER, S.DONE})
ECS_ONLY = frozenset({S.CUT_OVER, S.DONE})
# Where to read how to add a plan, as the page and the API say it.
HOW_TO_ADD = (
    "add a `migration:` section (its phases, each naming its services) to the application's "
    "config file and load it: see docs/app-config.md"
)


def no_plan_message(application: Application) -> str:
    return f"{application.slug} has no migration plan: {HOW_TO_ADD}"


@dataclass
class SideHealth:
    """One side's rollout rows over a service's last deploys, by how they ended."""

    out: int = 0
    failed: int = 0
    rolled_back: int = 0
    under_way: int = 0  # pending, updating or rolling back: its deploy has not finished

    @property
    def rows(self) -> int:
        return self.out + self.failed + self.rolled_back + self.under_way

    def count(self, status: str) -> None:
        if status == R.DONE:
            self.out += 1
        elif status in (R.FAILED, R.ROLLBACK_FAILED):
            self.failed += 1
        elif status == R.ROLLED_BACK:
            self.rolled_back += 1
        else:
            self.under_way += 1


@dataclass
class ServiceRow:
    service: Service
    runs_on: str  # "legacy", "both", "ECS", or "nowhere" (no placement in use)
    deploys: int = 0  # how many deploys the health below covers (at most HEALTH_DEPLOYS)
    legacy: SideHealth = field(default_factory=SideHealth)
    ecs: SideHealth = field(default_factory=SideHealth)


@dataclass
class PhaseRow:
    phase: MigrationPhase
    services: list[ServiceRow]
    next_state: str | None
    blockers: list[str]  # why the next move is refused now ([] when it is not)
    order_only: bool  # the only rule in the way is the order: staff may force it
    may_force: bool  # the person looking may force a phase out of order
    proofs: list[Proof]  # the ECS side's proof so far, while dual running
    may_move: bool = True  # the person looking is a maintainer of it (roles.py)

    @property
    def can_move(self) -> bool:
        return self.may_move and self.next_state is not None and not self.blockers

    @property
    def can_force(self) -> bool:
        return self.may_move and self.next_state is not None and self.order_only and self.may_force

    @property
    def next_label(self) -> str:
        return S(self.next_state).label if self.next_state else ""


@dataclass(frozen=True)
class SharePoint:
    """The share of the plan's processes on ECS from `at` on: after `move`, or at the start."""

    at: datetime
    move: MigrationMove | None
    on_ecs: float  # 0..1: dual running, cut over or done
    ecs_only: float  # 0..1: cut over or done


@dataclass
class MigrationPage:
    application: Application
    plan: MigrationPlan | None
    phases: list[PhaseRow] = field(default_factory=list)
    moves: list[MigrationMove] = field(default_factory=list)  # oldest first
    shares: list[SharePoint] = field(default_factory=list)  # the start, then one per move
    now: datetime | None = None

    @property
    def processes(self) -> int:
        return sum(len(row.services) for row in self.phases)


def migration_page(application: Application, user) -> MigrationPage:
    """The plan of `application` as `user` sees it (plan None when it has none)."""
    plan = MigrationPlan.objects.filter(application=application).first()
    page = MigrationPage(application, plan, now=timezone.now())
    if plan is None:
        return page
    phases = list(plan.phases.order_by("position"))
    by_id = {phase.pk: phase for phase in phases}
    services = list(
        Service.objects.filter(migration_phase__plan=plan)
        .prefetch_related("placements")
        .order_by("phase", "name")
    )
    health = _health([service.pk for service in services])
    members: dict[int, list[ServiceRow]] = {phase.pk: [] for phase in phases}
    for service in services:
        service.migration_phase = by_id[service.migration_phase_id]  # no query per service
        row = ServiceRow(service, runs_on(service))
        row.deploys, row.legacy, row.ecs = health.get(service.pk, (0, SideHealth(), SideHealth()))
        members[service.migration_phase_id].append(row)
    may_force = migration.can_force(user)
    may_move = roles.may(user, "move_phase", application)
    for phase in phases:
        to_state = migration.next_state(phase.state)
        blocking = migration.blockers(phase) if to_state else []
        order_only = bool(blocking) and not migration.blockers(phase, forced=True)
        proofs = migration.proof_of(phase) if phase.state == S.DUAL_RUNNING else []
        page.phases.append(
            PhaseRow(
                phase,
                members[phase.pk],
                to_state,
                blocking,
                order_only,
                may_force,
                proofs,
                may_move,
            )  # fmt: skip
        )
    page.moves = list(
        MigrationMove.objects.filter(phase__plan=plan).select_related("phase").order_by("at", "id")
    )
    page.shares = shares_over_time(phases, page.moves, {p.pk: len(members[p.pk]) for p in phases})
    return page


def runs_on(service: Service) -> str:
    """Where a deploy puts the service now, by the placements its phase uses."""
    sides = {migration.is_legacy(p) for p in service.placements.all() if migration.in_use(p)}
    if sides == {True, False}:
        return "both"
    if sides == {True}:
        return "legacy"
    if sides == {False}:
        return "ECS"
    return "nowhere"


def _health(service_ids: list[int]) -> dict[int, tuple[int, SideHealth, SideHealth]]:
    """Each service's last HEALTH_DEPLOYS deploys' rollout rows, by side: one query."""
    rows = (
        ServiceRollout.objects.filter(placement__service_id__in=service_ids)
        .annotate(
            recency=Window(
                DenseRank(),
                partition_by=[F("placement__service_id")],
                order_by=F("deploy_id").desc(),
            )
        )
        .filter(recency__lte=HEALTH_DEPLOYS)
        .values_list("placement__service_id", "deploy_id", "placement__kind", "status")
    )
    found: dict[int, tuple[set[int], SideHealth, SideHealth]] = {}
    for service_id, deploy_id, kind, status in rows:
        deploys, legacy, ecs = found.setdefault(service_id, (set(), SideHealth(), SideHealth()))
        deploys.add(deploy_id)
        (legacy if kind == "legacy" else ecs).count(status)
    return {pk: (len(deploys), legacy, ecs) for pk, (deploys, legacy, ecs) in found.items()}


def shares_over_time(
    phases: list[MigrationPhase], moves: list[MigrationMove], weights: dict[int, int]
) -> list[SharePoint]:
    """The share of processes on ECS at the start and after each move, oldest first.

    A phase weighs as many processes as it has services now; before its first move it was
    in that move's from_state (a phase never moved is where it is). The start is the earliest
    of the first move and the phases' state_since: when the plan was made, unless its phases
    were put in place by hand since.
    """
    first_from = {}
    for move in moves:
        first_from.setdefault(move.phase_id, move.from_state)
    states = {phase.pk: first_from.get(phase.pk, phase.state) for phase in phases}
    total = sum(weights.values())

    def point(at, move) -> SharePoint:
        if not total:
            return SharePoint(at, move, 0.0, 0.0)
        on = sum(weights.get(pk, 0) for pk, state in states.items() if state in ON_ECS)
        only = sum(weights.get(pk, 0) for pk, state in states.items() if state in ECS_ONLY)
        return SharePoint(at, move, on / total, only / total)

    if not phases:
        return []
    start = min([phase.state_since for phase in phases] + [move.at for move in moves[:1]])
    points = [point(start, None)]
    for move in moves:
        states[move.phase_id] = move.to_state
        points.append(point(move.at, move))
    return points
