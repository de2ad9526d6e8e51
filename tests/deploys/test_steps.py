from types import SimpleNamespace

import pytest
from celery.exceptions import Retry

from deploys.models import Deploy
from deploys.pipeline import RetryableStepError
from deploys.states import State
from deploys.steps import run_step


class FakeTask:
    """The little of a bound Celery task that run_step uses."""

    max_retries = 3

    def __init__(self, retries):
        self.request = SimpleNamespace(retries=retries)
        self.retried_with = None

    def retry(self, exc, countdown):
        self.retried_with = (exc, countdown)
        return Retry(exc=exc, when=countdown)


def remote_down(deploy):
    raise RetryableStepError("fetch from origin failed: connection refused")


@pytest.fixture
def merging(application, user):
    return Deploy.objects.create(
        application=application, branch="feature/a", requester=user, state=State.MERGING
    )


def test_passing_trouble_is_retried_with_backoff(merging):
    task = FakeTask(retries=1)
    with pytest.raises(Retry):
        run_step(task, merging.pk, State.MERGING, remote_down)
    assert task.retried_with[1] == 4
    merging.refresh_from_db()
    assert merging.state == State.MERGING


def test_after_the_last_retry_the_deploy_fails_saying_why(merging):
    run_step(FakeTask(retries=3), merging.pk, State.MERGING, remote_down)
    merging.refresh_from_db()
    assert merging.state == State.FAILED
    assert "connection refused" in merging.events.last().message


def test_a_deploy_that_moved_on_is_not_stepped(merging):
    ran = []
    run_step(FakeTask(0), merging.pk, State.BUILDING, ran.append)
    run_step(FakeTask(0), 987654, State.MERGING, ran.append)
    assert ran == []


def test_a_git_remote_that_is_gone_fails_the_deploy_clearly(
    application, user, sent_tasks, django_capture_on_commit_callbacks, tmp_path
):
    from deploys import actions

    with django_capture_on_commit_callbacks(execute=True):
        deploy = actions.queue_deploy(
            application=application.slug,
            branch="feature/clean-merge",
            mode="merge_only",
            requester=user,
        )
    application.git_remote_url = str(tmp_path / "gone.git")
    application.save()
    with django_capture_on_commit_callbacks(execute=True):
        sent_tasks.run_all()
    deploy.refresh_from_db()
    assert deploy.state == State.FAILED
    assert "gone.git" in deploy.events.last().message


def held_by_a_dead_worker(deploy):
    """The deploy's step lease, held by a process of this host that is gone (a pid no process
    has), as when the OOM killer took the pool process running the step."""
    import socket
    from datetime import timedelta

    from django.utils import timezone

    Deploy.objects.filter(pk=deploy.pk).update(
        step_lease_until=timezone.now() + timedelta(minutes=5),
        step_lease_holder=f"{socket.gethostname()}:{2**22 + 12345}:0",
    )


def test_a_step_whose_worker_died_is_taken_over_at_once_and_said(merging):
    ran = []
    held_by_a_dead_worker(merging)
    run_step(FakeTask(retries=0), merging.pk, State.MERGING, ran.append)
    assert [d.pk for d in ran] == [merging.pk]  # not kept out by the dead holder's lease
    assert merging.events.filter(message__contains="its worker died running this step").count() == 1


def test_a_step_that_keeps_killing_its_worker_is_not_run_again(merging, settings):
    settings.FC_STEP_MAX_WORKER_DEATHS = 3
    ran = []
    for _ in range(3):
        held_by_a_dead_worker(merging)
        run_step(FakeTask(retries=0), merging.pk, State.MERGING, ran.append)
    merging.refresh_from_db()
    assert len(ran) == 2  # the third death ends it
    assert merging.state == State.FAILED
    reason = merging.events.get(to_state=State.FAILED).message
    assert "the worker running its merging step died 3 times" in reason
    assert merging.step_lease_until is None


def test_a_build_that_keeps_killing_its_worker_fails_and_holds_the_slot(application, user):
    from builds import building
    from builds.models import Build, BuildStatus

    deploy = Deploy.objects.create(
        application=application, branch="feature/a", requester=user, state=State.BUILDING,
        candidate_sha="a" * 40,
    )  # fmt: skip
    build = Build.objects.create(deploy=deploy, attempt=1, status=BuildStatus.PENDING)
    for _ in range(3):
        # A worker claimed the attempt and was killed running it.
        Build.objects.filter(pk=build.pk).update(status=BuildStatus.RUNNING)
        held_by_a_dead_worker(deploy)
        run_step(
            FakeTask(retries=0),
            deploy.pk,
            State.BUILDING,
            lambda d: None,  # the build, which would kill its worker again
            on_taken_over=building.reclaim_abandoned_attempt,
            on_worker_deaths=building.give_up_after_worker_deaths,
        )
    deploy.refresh_from_db()
    build.refresh_from_db()
    assert deploy.state == State.BUILD_FAILED and deploy.held_until is not None
    assert build.status == BuildStatus.ERROR
    assert "the worker running its building step died 3 times" in build.summary
    # Each death said once: the build's own note, not a second one beside it.
    assert deploy.events.filter(message__contains="its worker died").count() == 3
