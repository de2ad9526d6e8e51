"""The demo's migration, put mid-way: the history `manage.py demo` gives a new plan.

The plan itself (its phases, their services, the proof a cut over needs) is the demo's
configuration file's. Where each phase stands is not in the file, since people move phases;
a plan the file has just made has every phase planned. The demo shows one mid-migration,
as the real one it mirrors: phase 1 (the low-risk process) cut over, phase 2 (the workers)
dual running, the pollers and the static files and webs still planned, with the moves that
got it there made weeks ago by two demo engineers, with their reasons, so the migration
page's chart has a history.

The moves are written as they were recorded, not made with clusters.migration.move(): a cut
over needs proof from deploys that happened since its phase began dual running, and the
demo's past has no deploys. Only an untouched plan (every phase planned, no move) is given
the history, so loading the demo again changes nothing, and never undoes a person's moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from clusters.models import MigrationMove, MigrationPhase, MigrationPlan, MigrationState

S = MigrationState

# The demo's engineers: username -> (first name, last name). They cannot log in.
PEOPLE = {"priya": ("Priya", "Raman"), "tomasz": ("Tomasz", "Nowak")}


@dataclass(frozen=True)
class PastMove:
    position: int  # the phase's
    to_state: str
    days_ago: float
    who: str
    reason: str


HISTORY = (
    PastMove(
        1,
        S.DUAL_RUNNING,
        27,
        "priya",
        "The mailer only sends receipts and password resets, and it retries: the cheapest "
        "process to get wrong. Starting the move with it.",
    ),
    PastMove(
        1,
        S.CUT_OVER,
        19.8,
        "priya",
        "Eight days on both sides and eleven deploys: no bounce from the ECS side, and mail "
        "goes out as fast as from the old hosts. Cutting the mailer over.",
    ),
    PastMove(
        2,
        S.DUAL_RUNNING,
        6.2,
        "tomasz",
        "The mailer has run on ECS alone for two weeks without an incident. The workers "
        "next: they read the same queues the mailer does.",
    ),
)


def is_untouched(plan: MigrationPlan) -> bool:
    """Every phase planned and no move: as the file made it."""
    return (
        not plan.phases.exclude(state=S.PLANNED).exists()
        and not MigrationMove.objects.filter(phase__plan=plan).exists()
    )


def put_mid_migration(plan: MigrationPlan, *, now=None) -> list[str]:
    """Give an untouched plan the demo's history; lines for people ([] if it was touched)."""
    now = now or timezone.now()
    with transaction.atomic():
        phases = {
            p.position: p for p in MigrationPhase.objects.select_for_update().filter(plan=plan)
        }
        if not is_untouched(plan):
            return []
        wanted = sorted({move.position for move in HISTORY})
        missing = [position for position in wanted if position not in phases]
        if missing:
            raise ValueError(
                f"the demo's history moves phase(s) {missing}, which the plan does not have"
            )
        people = _people()
        for past in HISTORY:
            phase = phases[past.position]
            at = now - timedelta(days=past.days_ago)
            MigrationMove.objects.create(
                phase=phase,
                from_state=phase.state,
                to_state=past.to_state,
                actor=people[past.who],
                actor_name=past.who,
                reason=past.reason,
                at=at,
            )
            phase.state, phase.state_since = past.to_state, at
        first_move = now - timedelta(days=max(move.days_ago for move in HISTORY))
        for phase in phases.values():
            if phase.state == S.PLANNED:
                phase.state_since = first_move  # planned since the move began
            phase.save(update_fields=["state", "state_since"])
    return [
        f"  phase {p.position} ({p.name}): {p.get_state_display().lower()}"
        for p in sorted(phases.values(), key=lambda p: p.position)
    ]


def _people() -> dict:
    User = get_user_model()
    people = {}
    for username, (first, last) in PEOPLE.items():
        user, created = User.objects.get_or_create(
            username=username, defaults={"first_name": first, "last_name": last}
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        people[username] = user
    return people
