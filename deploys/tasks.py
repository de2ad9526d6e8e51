from celery import shared_task

from . import pipeline, resume
from .states import State
from .steps import run_step

STEP_OPTIONS = {"bind": True, "acks_late": True, "max_retries": 5, "soft_time_limit": 900}


@shared_task(**STEP_OPTIONS)
def make_candidate(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.MERGING, pipeline.make_candidate)


@shared_task(**STEP_OPTIONS)
def merge_to_default(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.MERGING_TO_DEFAULT, pipeline.merge_to_default)


@shared_task(acks_late=True)
def resume_deploys() -> None:
    resume.resume_deploys()
