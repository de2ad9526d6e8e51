"""End to end with a real Celery worker on Redis, sharing the test database.

The worker runs in a thread of this process (celery.contrib.testing), so it sees
pytest-django's test database; the broker is the REDIS_URL that CI sets.
"""

import pytest
from django.conf import settings

from deploys.models import Deploy
from deploys.states import FINAL_STATES, State
from tests.remotes import remote_main
from tests.waiting import wait_until
from tests.workers import worker_in_this_process

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL, reason="needs Redis (make test sets REDIS_URL)"
)


@pytest.fixture
def worker(transactional_db, settings):
    with worker_in_this_process(settings) as w:
        yield w


# The worker runs whole git merges and builds: give it a minute, not the default seconds.
WORKER_TIMEOUT = 60.0


def wait_for(predicate, timeout=WORKER_TIMEOUT, what="condition"):
    return wait_until(predicate, timeout, what, interval=0.05)


def state_of(deploy_id):
    return Deploy.objects.get(pk=deploy_id).state


def wait_for_state(deploy_id, *states, timeout=60.0):
    wait_for(lambda: state_of(deploy_id) in states, timeout, f"deploy #{deploy_id} in {states}")
    return state_of(deploy_id)


def queue(api, branch, mode="merge_only"):
    response = api.post(
        "/api/deploys/", {"application": "demo-shop", "branch": branch, "mode": mode}, format="json"
    )
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def test_a_merge_only_deploy_queued_by_the_api_lands_on_main(worker, api, application, demo_remote):
    deploy_id = queue(api, "feature/clean-merge")
    assert wait_for_state(deploy_id, *FINAL_STATES) == State.MERGED
    deploy = Deploy.objects.get(pk=deploy_id)
    assert remote_main(demo_remote) == deploy.candidate_sha


def test_three_deploys_go_in_order(worker, api, application, user, other_user):
    branches = ["feature/clean-merge", "feature/flaky-test", "feature/broken-build"]
    ids = [queue(api, branch) for branch in branches]
    wait_for_state(ids[1], State.BUILD_FAILED)  # flaky: its first build fails
    assert state_of(ids[0]) == State.MERGED
    assert state_of(ids[2]) == State.QUEUED  # held back by the failed build's slot
    api.post(f"/api/deploys/{ids[1]}/retry-build/")
    assert wait_for_state(ids[1], *FINAL_STATES) == State.MERGED
    assert wait_for_state(ids[2], State.BUILD_FAILED) == State.BUILD_FAILED
    api.post(f"/api/deploys/{ids[2]}/abandon/")
    assert wait_for_state(ids[2], *FINAL_STATES) == State.ABANDONED
    started = list(Deploy.objects.filter(pk__in=ids).order_by("started_at").values_list("pk"))
    assert [pk for (pk,) in started] == ids


def test_a_failing_build_can_be_retried_then_abandoned_releasing_the_slot(worker, api, application):
    broken = queue(api, "feature/broken-build")
    waiting = queue(api, "feature/clean-merge")
    wait_for_state(broken, State.BUILD_FAILED)
    api.post(f"/api/deploys/{broken}/retry-build/")
    wait_for(
        lambda: Deploy.objects.get(pk=broken).builds.filter(status="failed").count() == 2,
        what="the second build to fail",
    )
    wait_for_state(broken, State.BUILD_FAILED)
    assert state_of(waiting) == State.QUEUED
    response = api.post(f"/api/deploys/{broken}/abandon/")
    assert response.status_code == 200
    assert wait_for_state(waiting, *FINAL_STATES) == State.MERGED


def test_a_jenkins_notification_moves_the_deploy_through_the_worker(
    worker, api, application, settings, monkeypatch, client
):
    """The production path: the hook queues a sync, the worker asks Jenkins and moves it.

    No beat runs here, so nothing but the notification can move the deploy. How fast it
    moves is measured by `make bench` (build notification to deploy moved), not here.
    """
    from builds.models import Build
    from deploys.models import Application
    from tests.jenkins_standin import JenkinsStandin

    with JenkinsStandin(jobs=("demo-shop",)) as jenkins_server:
        jenkins_server.queue_delay = 0
        jenkins_server.build_seconds = 0.2
        settings.JENKINS_URL = jenkins_server.url
        settings.JENKINS_USER = jenkins_server.user
        settings.JENKINS_TOKEN = jenkins_server.token
        monkeypatch.setenv(application.hook_secret_variable, "e2e-hook-secret")
        Application.objects.filter(pk=application.pk).update(build_backend="jenkins")

        deploy_id = queue(api, "feature/clean-merge")
        wait_for(
            lambda: (
                jenkins_server.builds("demo-shop") and jenkins_server.builds("demo-shop")[0].result
            ),
            what="the Jenkins build to finish",
        )
        assert state_of(deploy_id) == State.BUILDING  # finished in Jenkins, not yet told

        response = client.post(
            "/hooks/jenkins/",
            {"application": "demo-shop", "deploy_id": deploy_id, "attempt": 1},
            content_type="application/json",
            headers={"X-Fatcontroller-Secret": "e2e-hook-secret"},
        )

        assert response.status_code == 202
        assert wait_for_state(deploy_id, *FINAL_STATES) == State.MERGED
        build = Build.objects.get(deploy_id=deploy_id)
        assert build.build_number == 1
        assert "Started by user fatcontroller" in build.log
