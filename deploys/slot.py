"""The merge slot: per application a FIFO queue, one holder at a time.

The database keeps it to one holder (a partial unique constraint on Deploy); the row lock
on the application only makes the usual case quiet. Reaching a final state hands the slot
on at once (statemachine calls `advance` after commit); a locked application keeps its
queue but starts nothing.
"""

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Application, Deploy, DeployEvent
from .statemachine import transition
from .states import FINAL_STATES, SLOT_STATES, Mode, State

log = logging.getLogger(__name__)


def hand_on_if_final(deploy_id: int, application_id: int, to_state: str) -> None:
    """A listener for a committed state change (statemachine): a final state frees the slot."""
    if to_state in FINAL_STATES:
        advance(application_id)


def advance(application_id: int) -> Deploy | None:
    """Give the slot to the oldest queued deploy, if the slot is free; returns that deploy."""
    try:
        with transaction.atomic():
            application = Application.objects.select_for_update().get(pk=application_id)
            if application.locked:
                return None
            if Deploy.objects.filter(application=application, state__in=SLOT_STATES).exists():
                return None
            next_deploy = (
                Deploy.objects.filter(application=application, state=State.QUEUED)
                .order_by("id")
                .first()
            )
            if next_deploy is None:
                return None
            # A restore has nothing to merge or build: it goes straight to deploying.
            first_step = State.DEPLOYING if next_deploy.mode == Mode.RESTORE else State.MERGING
            deploy, _ = transition(
                next_deploy.pk,
                first_step,
                from_states=frozenset({State.QUEUED}),
                message="took the merge slot",
            )
            return deploy
    except IntegrityError:
        # Another process granted the slot between our check and our write: that is fine,
        # the constraint did its job.
        log.info("slot of application %s was granted elsewhere", application_id)
        return None


def queue_position(deploy: Deploy) -> int | None:
    """1 for the next deploy to take the slot; None when the deploy is not waiting."""
    if deploy.state != State.QUEUED:
        return None
    ahead = Deploy.objects.filter(
        application_id=deploy.application_id, state=State.QUEUED, id__lt=deploy.pk
    ).count()
    return ahead + 1


def open_deploys(application_ids) -> list[Deploy]:
    """The slot holders and the waiting deploys of these applications (ids), with their
    requesters, in the queue's order: first queued first."""
    # Sorted here, not by the database: asked to sort by id, SQLite walks the (application,
    # -id) index through every deploy of the application (31 ms at 100,000) rather than the
    # (application, state, id) one through the few that are open (0.1 ms).
    return sorted(
        Deploy.objects.filter(
            application_id__in=list(application_ids), state__in=SLOT_STATES | {State.QUEUED}
        )
        .select_related("requester")
        .order_by(),
        key=lambda deploy: deploy.pk,
    )


def queue_of(application: Application) -> tuple[Deploy | None, list[Deploy]]:
    """The slot holder and the waiting deploys, first in line first."""
    deploys = open_deploys([application.pk])
    for deploy in deploys:
        deploy.application = application
    holder = next((d for d in deploys if d.state in SLOT_STATES), None)
    waiting = [d for d in deploys if d.state == State.QUEUED]
    return holder, waiting


def lock(application: Application, *, actor, reason: str) -> None:
    now = timezone.now()
    Application.objects.filter(pk=application.pk).update(
        locked=True,
        lock_reason=reason,
        locked_by=actor,
        locked_at=now,
        changed_at=now,  # update() sets no auto_now: the live polls read it
    )


def unlock(application: Application) -> None:
    Application.objects.filter(pk=application.pk).update(
        locked=False, lock_reason="", locked_by=None, locked_at=None, changed_at=timezone.now()
    )
    transaction.on_commit(lambda: advance(application.pk))


def record_queued(deploy: Deploy) -> None:
    DeployEvent.objects.create(
        deploy=deploy,
        actor=deploy.requester,
        from_state="",
        to_state=State.QUEUED,
        message=f"queued {deploy.branch} ({deploy.get_mode_display().lower()})",
    )
