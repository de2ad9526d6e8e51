"""Running a pipeline step from a Celery task: re-fetch, check the state, call the logic.

Kept apart from tasks.py so the tasks of every app stay a few lines each.
"""

import logging

from .models import Deploy
from .pipeline import RetryableStepError, fail_after_retries
from .statemachine import IllegalTransition

log = logging.getLogger(__name__)


def run_step(
    task,
    deploy_id: int,
    expected_state: str,
    step,
    *,
    retry_on: tuple[type[Exception], ...] = (),
    give_up=fail_after_retries,
) -> None:
    """Run `step` on the deploy if it is still in `expected_state`.

    RetryableStepError (and the `retry_on` errors) run the step again with backoff; after
    the task's last retry `give_up(deploy, reason)` ends the wait, never silently.
    """
    deploy = Deploy.objects.select_related("application").filter(pk=deploy_id).first()
    if deploy is None or deploy.state != expected_state:
        # Delivered twice, or moved on (cancelled) since it was queued: nothing to do.
        log.info("deploy #%s is no longer %s: step skipped", deploy_id, expected_state)
        return
    try:
        step(deploy)
    except IllegalTransition as exc:
        log.info("deploy #%s moved on while its step ran: %s", deploy_id, exc)
    except (RetryableStepError, *retry_on) as exc:
        if task.request.retries >= task.max_retries:
            give_up(deploy, str(exc))
            return
        raise task.retry(exc=exc, countdown=min(2 ** (task.request.retries + 1), 60)) from exc
