"""The one way a deploy changes state.

`transition` checks the table in states.py, writes the new state and a DeployEvent in one
transaction under a row lock, and is safe to call twice: Celery delivers at least once,
workers die, two workers may race. What follows a change (chat, handing the slot on, the
next step's task) runs only after the transaction commits, in the listeners registered with
`listen` (deploys/apps.py); this module imports none of them.
"""

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from monitoring import metrics

from .leases import FREED
from .models import Deploy, DeployEvent, touch
from .states import FINAL_STATES, State, is_allowed

log = logging.getLogger(__name__)


class IllegalTransition(Exception):
    """The deploy is not in a state from which the requested move is allowed."""

    def __init__(self, deploy: Deploy, to_state: str):
        self.deploy = deploy
        self.to_state = to_state
        super().__init__(
            f"deploy #{deploy.pk} is {State(deploy.state).label.lower()}: "
            f"it cannot move to {State(to_state).label.lower()}"
        )


def transition(
    deploy_id: int,
    to_state: State,
    *,
    actor=None,
    message: str = "",
    from_states: frozenset[State] | None = None,
    **changes,
) -> tuple[Deploy, bool]:
    """Move a deploy to `to_state`; returns (deploy, whether anything changed).

    A deploy already in `to_state` is left alone (the second of two identical calls).
    `from_states` narrows the legal starting states for this caller, e.g. a cancel button.
    `changes` are more fields written with the state (say candidate_sha).
    """
    with transaction.atomic():
        deploy = Deploy.objects.select_for_update().get(pk=deploy_id)
        if deploy.state == to_state:
            return deploy, False
        if (from_states is not None and deploy.state not in from_states) or not is_allowed(
            deploy.state, to_state, deploy.mode
        ):
            raise IllegalTransition(deploy, to_state)

        from_state = deploy.state
        now = timezone.now()
        deploy.state = to_state
        # A step lease belongs to the step of the state left; the next step takes its own.
        for field, free in FREED.items():
            setattr(deploy, field, free)
        if from_state == State.QUEUED and to_state != State.CANCELLED:
            deploy.started_at = now
        if to_state in FINAL_STATES:
            deploy.finished_at = now
        for field, value in changes.items():
            setattr(deploy, field, value)
        deploy.save()
        DeployEvent.objects.create(
            deploy=deploy, actor=actor, from_state=from_state, to_state=to_state, message=message
        )
        log.info("deploy #%s: %s -> %s %s", deploy.pk, from_state, to_state, message)
        metrics.record_state_left(
            from_state, lambda: _entered_at(deploy.pk, from_state), left_at=now
        )  # written after commit
        transaction.on_commit(lambda: _after_transition(deploy.pk, deploy.application_id, to_state))
    return deploy, True


def _entered_at(deploy_id: int, state: str):
    """When the deploy last moved into `state` (its creation, if it started there)."""
    return (
        DeployEvent.objects.filter(deploy_id=deploy_id, to_state=state)
        .exclude(from_state=state)  # notes on the timeline, not moves
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    ) or Deploy.objects.filter(pk=deploy_id).values_list("created_at", flat=True).first()


def record_event(deploy: Deploy, message: str, *, actor=None) -> DeployEvent:
    """A note on the timeline that does not change the state, but touches the deploy: the
    live polls see the note by it (deploys/live.py)."""
    touch(deploy.pk)
    return DeployEvent.objects.create(
        deploy=deploy,
        actor=actor,
        from_state=deploy.state,
        to_state=deploy.state,
        message=message,
    )


# Who hears of a committed state change, in the order they were registered (deploys/apps.py):
# chat first, so a deploy's end is told before the next deploy's start, then the slot and
# the next step. Each is called as listener(deploy_id, application_id, to_state).
_listeners: list[Callable[[int, int, str], None]] = []


def listen(listener: Callable[[int, int, str], None]) -> None:
    """Call `listener` after every committed state change (registering twice is once)."""
    if listener not in _listeners:
        _listeners.append(listener)


def _after_transition(deploy_id: int, application_id: int, to_state: State) -> None:
    for listener in _listeners:
        listener(deploy_id, application_id, to_state)
