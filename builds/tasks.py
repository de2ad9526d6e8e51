from celery import shared_task

from deploys.models import Deploy
from deploys.states import State
from deploys.steps import run_step

from . import building
from .backends import BackendUnavailable


# A local build runs inside this task for up to the application's build timeout, which the
# runner enforces, so no time limit here. Running it twice is safe: the attempt is claimed once.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=8)
def run_build(self, deploy_id: int) -> None:
    # Eight tries with doubling waits (2 s up to 60 s) ride out a Jenkins restart.
    run_step(
        self,
        deploy_id,
        State.BUILDING,
        building.run_build,
        retry_on=(building.StartTrouble,),
        give_up=building.give_up_starting,
        on_taken_over=building.reclaim_abandoned_attempt,
        on_worker_deaths=building.give_up_after_worker_deaths,
    )


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=0,
    soft_time_limit=120,
    time_limit=150,
)
def sync_build(self, deploy_id: int) -> None:
    # No retries: the next notification or poll runs it again anyway.
    run_step(self, deploy_id, State.BUILDING, building.sync_build)


@shared_task(soft_time_limit=120, time_limit=150)
def poll_builds() -> None:
    building.poll_builds()


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(BackendUnavailable,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=6,
    soft_time_limit=120,
    time_limit=150,
)
def abort_builds(self, deploy_id: int) -> None:
    deploy = Deploy.objects.select_related("application").filter(pk=deploy_id).first()
    if deploy is not None:
        building.abort_builds(deploy)
