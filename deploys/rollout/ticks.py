"""The chain of ticks a watching step is made of, under the deploy's lease.

A tick runs only while it holds the lease (a redelivered task or the safety net's resend
stands down), and asks for the next tick while the deploy stays in the same state.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from .. import dispatch, leases
from ..models import Deploy
from ..statemachine import IllegalTransition, transition
from ..states import State

log = logging.getLogger(__name__)


def tick(deploy: Deploy, step) -> None:
    """Run one tick of `step` under the deploy's lease, then ask for the next one: after the
    poll, or at once when the step says so (it waited on its target already)."""
    if not take_lease(deploy):
        log.info("deploy #%s: another tick is at work; this one stands down", deploy.pk)
        return
    at_once = False
    try:
        at_once = bool(step(deploy))
    finally:
        # If the tick moved the deploy, the transition freed the lease and the next state's
        # tick may hold one already.
        leases.release(deploy.pk, deploy.state)
    current = Deploy.objects.filter(pk=deploy.pk).values_list("state", flat=True).first()
    if current == deploy.state:
        dispatch.send_next_tick(
            deploy.pk, deploy.state, at_once=at_once, countdown=next_tick_in(deploy)
        )


def next_tick_in(deploy: Deploy) -> float:
    """Seconds to the next tick: the poll, or less where the soak ends sooner, so that it
    ends at its time and not up to a poll late."""
    poll = float(settings.FC_ROLLOUT_POLL_SECONDS)
    if deploy.state != State.VERIFYING or deploy.verify_until is None:
        return poll
    left = (deploy.verify_until - timezone.now()).total_seconds()
    return min(poll, max(left, 0.0))


def take_lease(deploy: Deploy) -> bool:
    # updated_at is the heartbeat the safety net reads: a tick that runs is alive.
    return leases.take(
        deploy.pk, deploy.state, settings.FC_ROLLOUT_LEASE, updated_at=timezone.now()
    )


def move(deploy: Deploy, to_state: State, message: str, **changes) -> None:
    """Move on, unless someone else moved the deploy meanwhile."""
    try:
        transition(
            deploy.pk, to_state, from_states=frozenset({deploy.state}), message=message, **changes
        )
    except IllegalTransition as exc:
        log.info("deploy #%s moved on meanwhile: %s", deploy.pk, exc)
