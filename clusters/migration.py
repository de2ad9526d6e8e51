"""Migration plans: which side of a service a deploy touches, and the rules for moving a phase.

A plan orders an application's services into phases. A phase moves
planned -> dual_running -> cut_over -> done, one step at a time, by a person, with a reason:

* planned: deploys touch the legacy side (the legacy job) only;
* dual_running: deploys touch both sides, in parallel, and a failure on either restores both;
* cut_over: deploys touch the ECS side only; the legacy placement is kept, unused;
* done: the legacy placements are retired (kept in history, never deployed again).

A service in no plan keeps the behaviour it had before plans: its ECS placements only. Every
rule is checked again under a row lock when the move is made, so two people pressing at once
cannot both pass a rule that only one of them may.

The proof a cut over needs (the ECS side out and healthy through the plan's number of deploys
and hours of dual running) is read from the placements' rollout rows by their reverse relation:
deploys know clusters, not the other way round, so only deploys.states (the table of states,
which imports nothing) is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts import audit
from deploys.states import FINAL_STATES

from .models import (
    MigrationMove,
    MigrationPhase,
    MigrationState,
    Placement,
    PlacementKind,
    Service,
)

S = MigrationState
ORDER = (S.PLANNED, S.DUAL_RUNNING, S.CUT_OVER, S.DONE)
# Where a phase's services run in each state, as the migration page says it.
SIDES = {S.PLANNED: "legacy", S.DUAL_RUNNING: "both", S.CUT_OVER: "ECS", S.DONE: "ECS"}
# A rollout row's and a deploy's words for "out" and "succeeded" (RolloutStatus, State).
_ROLLOUT_DONE = "done"
_DEPLOY_SUCCEEDED = "succeeded"


class MigrationRefused(Exception):
    """The move breaks a rule; the message says which, and nothing was changed."""


def is_legacy(placement: Placement) -> bool:
    return placement.kind == PlacementKind.LEGACY


def in_use(placement: Placement) -> bool:
    """Does a deploy touch this placement now? (placement.service.migration_phase is read)."""
    phase = placement.service.migration_phase
    return touches(placement.kind, placement.retired_at, phase.state if phase else None)


def touches(kind: str, retired_at, phase_state: str | None) -> bool:
    """in_use from the values alone, for a query that reads many placements at once."""
    if retired_at is not None:
        return False
    legacy = kind == PlacementKind.LEGACY
    if phase_state is None or phase_state in (S.CUT_OVER, S.DONE):
        return not legacy
    if phase_state == S.PLANNED:
        return legacy
    return True  # dual running: both sides


def next_state(state: str) -> str | None:
    index = ORDER.index(S(state))
    return ORDER[index + 1] if index + 1 < len(ORDER) else None


def can_force(user) -> bool:
    """Who may start a phase out of order (maintainers, once roles exist; staff until then)."""
    return bool(user is not None and user.is_active and user.is_staff)


@dataclass(frozen=True)
class Proof:
    """How far the ECS side of one service has proven itself since its phase began dual running."""

    service: str
    deploys: int  # deploys that put its ECS placements out healthy and succeeded
    deploys_needed: int
    hours: float
    hours_needed: int

    @property
    def proven(self) -> bool:
        return self.deploys >= self.deploys_needed and self.hours >= self.hours_needed

    def shortfall(self) -> str:
        short = []
        if self.deploys < self.deploys_needed:
            short.append(f"{self.deploys} of {self.deploys_needed} deploys")
        if self.hours < self.hours_needed:
            short.append(f"{self.hours:.1f} of {self.hours_needed} h")
        return f"{self.service}: " + (" and ".join(short) or "proven")


def proof_of(phase: MigrationPhase) -> list[Proof]:
    """Each service's proof since the phase began dual running (nothing before it began)."""
    plan = phase.plan
    began = phase.state_since
    hours = (
        max(0.0, (timezone.now() - began).total_seconds() / 3600)
        if phase.state != S.PLANNED
        else 0.0
    )
    proofs = []
    for service in phase.services.order_by("phase", "name"):
        ecs = [p for p in service.placements.all() if not is_legacy(p)]
        if not ecs:
            proofs.append(Proof(service.name, 0, plan.proof_deploys, hours, plan.proof_hours))
            continue
        counts = []
        for placement in ecs:
            counts.append(
                placement.rollouts.filter(
                    status=_ROLLOUT_DONE,
                    deploy__state=_DEPLOY_SUCCEEDED,
                    finished_at__gte=began,
                )
                .values("deploy")
                .distinct()
                .count()
            )
        proofs.append(Proof(service.name, min(counts), plan.proof_deploys, hours, plan.proof_hours))
    return proofs


def blockers(phase: MigrationPhase, *, forced: bool = False) -> list[str]:
    """Why the phase cannot move to its next state now ([] when it can)."""
    to_state = next_state(phase.state)
    if to_state is None:
        return [f"phase {phase.position} ({phase.name}) is done: there is nothing after done"]
    services = list(phase.services.prefetch_related("placements"))
    if not services:
        return [f"phase {phase.position} ({phase.name}) has no services"]
    if to_state == S.DUAL_RUNNING:
        problems = []
        # Every phase ahead must be cut over; the message names the nearest that is not.
        ahead = (
            MigrationPhase.objects.filter(plan=phase.plan, position__lt=phase.position)
            .exclude(state__in=(S.CUT_OVER, S.DONE))
            .order_by("-position")
            .first()
        )
        if ahead is not None and not forced:
            problems.append(
                f"phase {ahead.position} ({ahead.name}) is {ahead.get_state_display().lower()}: "
                "a phase starts dual running only once the one ahead of it is cut over"
            )
        return problems + [f"{name} has no ECS placement to run on" for name in _no_ecs(services)]
    if to_state == S.CUT_OVER:
        problems = [f"{name} has no ECS placement to cut over to" for name in _no_ecs(services)]
        return problems + [
            f"the ECS side is not proven yet: {proof.shortfall()}"
            for proof in proof_of(phase)
            if not proof.proven
        ]
    in_flight = _deploys_using_legacy(services)
    if in_flight:
        return [
            f"deploy #{pk} is still using the legacy side: wait until it has finished"
            for pk in in_flight
        ]
    return []


def _no_ecs(services: list[Service]) -> list[str]:
    """The services with nothing but legacy placements: nowhere on ECS to move to."""
    return [s.name for s in services if all(is_legacy(p) for p in s.placements.all())]


def _deploys_using_legacy(services: list[Service]) -> list[int]:
    deploys = set()
    for service in services:
        for placement in service.placements.all():
            if is_legacy(placement):
                deploys.update(
                    placement.rollouts.exclude(deploy__state__in=FINAL_STATES).values_list(
                        "deploy_id", flat=True
                    )
                )
    return sorted(deploys)


def move(
    phase: MigrationPhase, to_state: str, *, actor, reason: str, force: bool = False
) -> MigrationMove:
    """Move the phase on one step, recorded with who, when and why; MigrationRefused if not."""
    reason = (reason or "").strip()
    if not reason:
        raise MigrationRefused("say why: a move needs a reason")
    if len(reason) > 1000:
        raise MigrationRefused("the reason is longer than 1000 characters")
    if force and not can_force(actor):
        raise MigrationRefused("only staff may force a phase out of order")
    with transaction.atomic():
        # Every phase of the plan is locked, in order, so the rules see a plan nobody moves.
        locked = list(
            MigrationPhase.objects.select_for_update()
            .filter(plan_id=phase.plan_id)
            .order_by("position")
        )
        phase = next(p for p in locked if p.pk == phase.pk)
        wanted = next_state(phase.state)
        if to_state not in ORDER or S(to_state) != wanted:
            raise MigrationRefused(_wrong_step(phase, to_state))
        problems = blockers(phase, forced=force)
        if problems:
            raise MigrationRefused("; ".join(problems))
        forced = force and bool(blockers(phase, forced=False))
        now = timezone.now()
        record = MigrationMove.objects.create(
            phase=phase,
            from_state=phase.state,
            to_state=to_state,
            actor=actor,
            actor_name=getattr(actor, "username", "") or "",
            reason=reason,
            forced=forced,
            at=now,
        )
        phase.state, phase.state_since = to_state, now
        phase.save(update_fields=["state", "state_since"])
        audit.record(
            actor,
            audit.PLAN_MOVE,
            application=phase.plan.application,
            subject=f"migration phase {phase.position} ({phase.name})",
            change={"from": record.from_state, "to": to_state, "reason": reason, "forced": forced},
        )
        if to_state == S.DONE:
            Placement.objects.filter(
                service__migration_phase=phase, kind=PlacementKind.LEGACY, retired_at=None
            ).update(retired_at=now)
    return record


def _wrong_step(phase: MigrationPhase, to_state: str) -> str:
    try:
        asked = S(to_state).label.lower()
    except ValueError:
        return f"{to_state!r} is not a phase state: planned, dual_running, cut_over or done"
    now = phase.get_state_display().lower()
    wanted = next_state(phase.state)
    if wanted is None:
        return f"phase {phase.position} ({phase.name}) is done: it cannot move to {asked}"
    return (
        f"phase {phase.position} ({phase.name}) is {now}: it can move to "
        f"{S(wanted).label.lower()} only, not to {asked}"
    )
