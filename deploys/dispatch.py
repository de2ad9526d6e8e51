"""Sending work to the workers, by task name: a deploy's step now, its next tick after the
poll interval, or any other task. The one seam tests fake (tests/conftest.py records what
would be sent instead of sending it).

A leaf: it imports only the states' facts and Celery, so that every module that moves a
deploy on can use it without importing the tasks that import them.
"""

from __future__ import annotations

from celery import current_app
from django.conf import settings

from .states import MEANING, State

# The task that runs the step of each state (states.MEANING). States missing here wait for a
# person (build_failed) or are final.
STEP_TASKS = {state: meaning.step for state, meaning in MEANING.items() if meaning.step}
# States whose step is a tick that watches the targets and runs again until the state moves.
WATCHING_STATES = frozenset(state for state, meaning in MEANING.items() if meaning.watches)


def send_task(task_name: str, object_id: int) -> None:
    current_app.send_task(task_name, args=[object_id])


def send_task_later(task_name: str, object_id: int, countdown: float | None = None) -> None:
    """After `countdown` seconds (FC_ROLLOUT_POLL_SECONDS by default): the next tick of a
    watching step."""
    if countdown is None:
        countdown = settings.FC_ROLLOUT_POLL_SECONDS
    current_app.send_task(task_name, args=[object_id], countdown=countdown)


def send_step(deploy_id: int, state: str) -> None:
    """The step of `state`, if it has one."""
    task_name = STEP_TASKS.get(State(state))
    if task_name:
        send_task(task_name, deploy_id)


def send_next_tick(
    deploy_id: int, state: str, *, at_once: bool = False, countdown: float | None = None
) -> None:
    """The next tick: at once, after `countdown` seconds, or after the poll."""
    if at_once:
        send_task(STEP_TASKS[State(state)], deploy_id)
    else:
        send_task_later(STEP_TASKS[State(state)], deploy_id, countdown)


def step_moved_on(deploy_id: int, application_id: int, to_state: str) -> None:
    """A listener for a committed state change (statemachine): the new state's step goes."""
    send_step(deploy_id, to_state)
