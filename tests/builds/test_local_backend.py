"""The local backend through the build backend interface, with the database and a real git."""

import contextlib
import shlex
import threading

import pytest
from django.db import connection

from builds import building
from builds.local_backend import LocalBackend
from builds.models import Build, BuildStatus
from deploys.models import Application, Deploy
from deploys.states import State

from .test_local_runner import make_it_build, queue_clean_merge, wait_until


def building_deploy(application, user, sent_tasks, capture, script: str) -> Deploy:
    with capture(execute=True):
        deploy = queue_clean_merge(application, user)
    deploy = make_it_build(deploy, sent_tasks)
    Application.objects.filter(pk=application.pk).update(
        build_command="sh -c " + shlex.quote(script)
    )
    deploy.application.refresh_from_db()
    return deploy


def test_the_build_gets_its_parameters_and_the_log_reads_back_from_any_offset(
    application, user, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = building_deploy(
        application,
        user,
        sent_tasks,
        django_capture_on_commit_callbacks,
        'echo "tag=$FC_IMAGE_TAG attempt=$FC_BUILD_ATTEMPT ref=$FC_CANDIDATE_REF"',
    )
    backend = LocalBackend()
    build = building.claim_pending_build(deploy)

    backend.start(build, building.spec_for(deploy, build))
    report = backend.status(build)

    assert report.finished and report.passed
    build.refresh_from_db()
    line = f"tag={deploy.candidate_sha[:12]} attempt=1 ref={deploy.candidate_ref}\n"
    assert line in build.log
    whole = backend.read_log(build, 0)
    assert whole.text == build.log and whole.next_offset == len(build.log)
    rest = backend.read_log(build, 10)
    assert rest.text == build.log[10:] and rest.next_offset == len(build.log)
    assert backend.read_log(build, whole.next_offset).text == ""


def test_a_finished_build_reports_from_the_database_in_another_process(
    application, user, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = building_deploy(
        application, user, sent_tasks, django_capture_on_commit_callbacks, "exit 3"
    )
    building.run_build(deploy)

    report = LocalBackend().status(deploy.builds.get())  # a backend that did not run it

    assert report.finished and report.passed is False
    assert report.summary == "exit code 3"
    assert Deploy.objects.get(pk=deploy.pk).state == State.BUILD_FAILED


def test_aborting_a_pending_build_keeps_any_worker_from_starting_it(
    application, user, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = building_deploy(
        application, user, sent_tasks, django_capture_on_commit_callbacks, "echo never"
    )
    build = deploy.builds.get()

    LocalBackend().abort(build)
    LocalBackend().abort(build)  # twice does no harm

    assert Build.objects.get(pk=build.pk).status == BuildStatus.ABORTED
    assert building.claim_pending_build(deploy) is None


@pytest.mark.django_db(transaction=True)
def test_abort_stops_a_running_local_build_within_a_second_or_so(
    application, user, sent_tasks, settings
):
    settings.FC_BUILD_LOG_FLUSH_SECONDS = 0.05
    deploy = building_deploy(
        application,
        user,
        sent_tasks,
        # With a transactional database on_commit callbacks run at once: nothing to capture.
        lambda execute: contextlib.nullcontext(),
        "echo started; sleep 30; echo never-$((1 + 1))",
    )
    build = deploy.builds.get()
    runner = threading.Thread(target=_run_then_close, args=(deploy,), daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: "started" in Build.objects.get(pk=build.pk).log)
        building.abort_builds(Deploy.objects.get(pk=deploy.pk))
        runner.join(timeout=10)
        assert not runner.is_alive(), "the build kept running after the abort"
        build.refresh_from_db()
        assert build.status == BuildStatus.ABORTED
        assert "never-2" not in build.log
        assert "the build was aborted" in build.log
    finally:
        runner.join(timeout=5)


def _run_then_close(deploy: Deploy) -> None:
    try:
        building.run_build(deploy)
    finally:
        connection.close()
