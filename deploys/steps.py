"""Running a pipeline step from a Celery task: re-fetch, check the state, call the logic.

Kept apart from tasks.py so the tasks of every app stay a few lines each.

A step that is not a watching tick (merging, building, merging to default) runs under the
deploy's step lease: taken with a conditional update, so two deliveries of one step never
run at once, and renewed while the step runs, so the safety net can tell a step at work
from a step whose message or worker was lost (deploys/resume.py). Watching ticks take the
same lease themselves, for one tick (deploys/rollout/ticks.py).
"""

import logging
import threading
from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone

from . import leases
from .dispatch import WATCHING_STATES
from .models import Deploy
from .pipeline import RetryableStepError, fail_after_retries
from .statemachine import IllegalTransition, record_event
from .states import State

log = logging.getLogger(__name__)


def run_step(
    task,
    deploy_id: int,
    expected_state: str,
    step,
    *,
    retry_on: tuple[type[Exception], ...] = (),
    give_up=fail_after_retries,
    on_taken_over=None,
    on_worker_deaths=None,
) -> None:
    """Run `step` on the deploy if it is still in `expected_state`.

    RetryableStepError (and the `retry_on` errors) run the step again with backoff; after
    the task's last retry `give_up(deploy, reason)` ends the wait, never silently.
    `on_taken_over(deploy, holder_gone=...)` runs once the lease is taken, saying whether it
    was taken from a process known to be gone: to pick up what that process left half done.
    A step whose worker died FC_STEP_MAX_WORKER_DEATHS times in this state (a step that gets
    its process OOM-killed every time) is not run again: `on_worker_deaths(deploy, reason)`
    (default `give_up`) ends it with the reason.
    """
    deploy = Deploy.objects.select_related("application").filter(pk=deploy_id).first()
    if deploy is None or deploy.state != expected_state:
        # Delivered twice, or moved on (cancelled) since it was queued: nothing to do.
        log.info("deploy #%s is no longer %s: step skipped", deploy_id, expected_state)
        return
    # A watching tick takes the lease itself, for one tick (rollout.tick); this renews it.
    leased = expected_state not in WATCHING_STATES
    if leased:
        taken = leases.take(deploy_id, expected_state, settings.FC_STALL_AFTER)
        if not taken:
            log.info(
                "deploy #%s: its %s step is at work elsewhere: stands down",
                deploy_id,
                expected_state,
            )
            return
        noted_before = _latest_event_id(deploy) if taken is leases.Taken.FROM_GONE else 0
        if on_taken_over is not None:
            on_taken_over(deploy, holder_gone=taken is leases.Taken.FROM_GONE)
        if taken is leases.Taken.FROM_GONE:
            deaths = _count_worker_death(deploy, noted_after=noted_before)
            if deaths >= settings.FC_STEP_MAX_WORKER_DEATHS:
                reason = (
                    f"the worker running its {State(expected_state).label.lower()} step died "
                    f"{deaths} times (killed for memory?): not run again"
                )
                try:
                    (on_worker_deaths or give_up)(deploy, reason)
                finally:
                    leases.release(deploy_id, expected_state)
                return
    lease = settings.FC_STALL_AFTER if leased else settings.FC_ROLLOUT_LEASE
    try:
        with _renewing(
            deploy_id, expected_state, lease, enabled=not getattr(task.request, "is_eager", False)
        ):
            step(deploy)
    except IllegalTransition as exc:
        log.info("deploy #%s moved on while its step ran: %s", deploy_id, exc)
    except (RetryableStepError, *retry_on) as exc:
        if task.request.retries >= task.max_retries:
            give_up(deploy, str(exc))
            return
        countdown = min(2 ** (task.request.retries + 1), 60)
        if leased:
            # Free for the retry to take; the safety net counts the quiet from when the retry
            # is due, so it does not send the step again while the retry waits.
            due = timezone.now() + timedelta(seconds=countdown)
            leases.release(deploy_id, expected_state, updated_at=due)
            leased = False
        raise task.retry(exc=exc, countdown=countdown) from exc
    finally:
        if leased:
            # Only in the step's own state: a transition cleared it, and the next state's
            # step may hold a lease of its own by now.
            leases.release(deploy_id, expected_state)


# Every timeline note of a step's worker dying says this (builds/building.py's too).
WORKER_DIED = "its worker died"


def _count_worker_death(deploy: Deploy, *, noted_after: int) -> int:
    """Note on the timeline that the step's worker died (unless the takeover did already, as
    a build's does) and return how often it died since the deploy entered its state."""
    died = deploy.events.filter(message__contains=WORKER_DIED)
    if not died.filter(id__gt=noted_after).exists():
        record_event(deploy, f"{WORKER_DIED} running this step; running it again")
    entered = (
        deploy.events.filter(to_state=deploy.state)
        .exclude(from_state=deploy.state)
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    ) or 0
    return died.filter(id__gt=entered).count()


def _latest_event_id(deploy: Deploy) -> int:
    return deploy.events.order_by("-id").values_list("id", flat=True).first() or 0


@contextmanager
def _renewing(deploy_id: int, state: str, lease: timedelta, *, enabled: bool):
    """Renew the lease from a thread while the step runs (a git fetch or a throttled AWS
    call may take minutes), so a live step is never taken for a lost one. Off when a test
    runs tasks eagerly inside its own transaction, where another connection could only wait."""
    if not enabled:
        yield
        return
    stop = threading.Event()

    def renew():
        try:
            while not stop.wait(lease.total_seconds() / 4):
                try:
                    # Only a lease this process still holds: once released, it stays so.
                    leases.renew(deploy_id, state, lease)
                except DatabaseError as exc:  # the next renewal tries again
                    log.warning("deploy #%s: could not renew its step lease: %s", deploy_id, exc)
                    close_old_connections()
        finally:
            connection.close()  # this thread's own connection

    renewer = threading.Thread(target=renew, name=f"lease-{deploy_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join(timeout=5)
