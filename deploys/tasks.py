from celery import shared_task
from django.conf import settings

from . import notify, pipeline, resume
from .rollout import back, forward, soak, ticks
from .states import State
from .steps import run_step

# Steps are idempotent, so a step whose pool process died is put back for another to run.
STEP_OPTIONS = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": 5,
    "soft_time_limit": settings.FC_STEP_TIME_LIMIT - 60,
    "time_limit": settings.FC_STEP_TIME_LIMIT,
}


@shared_task(**STEP_OPTIONS)
def make_candidate(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.MERGING, pipeline.make_candidate)


@shared_task(**STEP_OPTIONS)
def merge_to_default(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.MERGING_TO_DEFAULT, pipeline.merge_to_default)


# The watching steps: short ticks, each asking for the next (rollout/ticks.py); no retries, since
# the next tick or the safety net runs them again anyway.
TICK_OPTIONS = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "max_retries": 0,
    "soft_time_limit": 120,
    "time_limit": 150,
}


@shared_task(**TICK_OPTIONS)
def deploy_tick(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.DEPLOYING, lambda d: ticks.tick(d, forward.deploy_step))


@shared_task(**TICK_OPTIONS)
def verify_tick(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.VERIFYING, lambda d: ticks.tick(d, soak.verify_step))


@shared_task(**TICK_OPTIONS)
def rollback_tick(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.ROLLING_BACK, lambda d: ticks.tick(d, back.rollback_step))


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=120, time_limit=150)
def resume_deploys() -> None:
    resume.resume_deploys()


# One state change told to the application's chat webhook (deploys/notify.py). Its argument is
# the DeployEvent's id, never the URL; retries (2 s, 4 s ... up to 60 s) ride out a 429 or 5xx.
@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(notify.WebhookUnavailable,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=60,
)
def post_webhook(self, event_id: int) -> None:
    notify.post_event(event_id, last_try=self.request.retries >= self.max_retries)
