from celery import shared_task

from deploys.states import State
from deploys.steps import run_step

from . import building


@shared_task(bind=True, acks_late=True, max_retries=5)
def run_build(self, deploy_id: int) -> None:
    run_step(self, deploy_id, State.BUILDING, building.run_build)
