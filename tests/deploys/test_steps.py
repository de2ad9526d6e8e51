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
