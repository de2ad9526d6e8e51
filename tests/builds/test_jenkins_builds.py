"""Deploys built on Jenkins: the real python-jenkins client against the stand-in Jenkins.

The pipeline runs in this process (the `drive` fixture runs each task a worker would run);
Jenkins runs its builds on its own threads, so tests wait for it with a deadline.
"""

import pytest
from celery.exceptions import Retry
from django.utils import timezone

from builds import building
from builds.models import Build, BuildStatus
from builds.tasks import run_build
from deploys import actions, pipeline
from deploys.models import Application, Deploy
from deploys.resume import resume_deploys
from deploys.states import State
from tests.jenkins_standin import JenkinsStandin
from tests.queueing import queue_and_drive
from tests.waiting import wait_until

HOOK_SECRET = "hook-secret-for-tests"
JOB = "demo-shop"


@pytest.fixture
def jenkins_server():
    server = JenkinsStandin(jobs=(JOB,))
    server.queue_delay = 0
    server.build_seconds = 0.2
    with server:
        yield server


@pytest.fixture
def on_jenkins(application, jenkins_server, settings, monkeypatch):
    settings.JENKINS_URL = jenkins_server.url
    settings.JENKINS_USER = jenkins_server.user
    settings.JENKINS_TOKEN = jenkins_server.token
    settings.JENKINS_TIMEOUT = 5.0
    monkeypatch.setenv(application.hook_secret_variable, HOOK_SECRET)
    Application.objects.filter(pk=application.pk).update(build_backend="jenkins")
    application.refresh_from_db()
    return application


def jenkins_result(jenkins_server, number):
    builds = jenkins_server.builds(JOB)
    return len(builds) >= number and builds[number - 1].result


def notify(client, deploy, attempt, secret=HOOK_SECRET, application="demo-shop"):
    return client.post(
        "/hooks/jenkins/",
        {"application": application, "deploy_id": deploy.pk, "attempt": attempt},
        content_type="application/json",
        headers={"X-Fatcontroller-Secret": secret},
    )


def test_a_green_jenkins_build_is_merged_once_jenkins_says_it_finished(
    on_jenkins, jenkins_server, user, client, drive, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    build = deploy.builds.get()
    assert deploy.state == State.BUILDING
    assert build.backend == "jenkins" and build.status == BuildStatus.RUNNING
    assert build.queue_id is not None
    assert "handed to jenkins" in deploy.events.last().message

    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")
    response = notify(client, deploy, 1)
    assert response.status_code == 202, response.content
    assert sent_tasks.sent == [("builds.tasks.sync_build", deploy.pk)]
    drive()

    deploy.refresh_from_db()
    build.refresh_from_db()
    assert deploy.state == State.MERGED
    assert build.status == BuildStatus.SUCCEEDED
    assert build.build_number == 1
    assert build.external_url.startswith(jenkins_server.url)
    assert "SUCCESS" in build.summary
    assert "Started by user fatcontroller" in build.log
    ran = jenkins_server.builds(JOB)[0]
    assert ran.parameters["FC_CANDIDATE_SHA"] == deploy.candidate_sha
    assert ran.parameters["FC_DEPLOY_ID"] == str(deploy.pk)
    assert ran.parameters["FC_BUILD_ATTEMPT"] == "1"
    assert ran.parameters["FC_IMAGE_TAG"] == deploy.candidate_sha[:12]
    assert len(jenkins_server.builds(JOB)) == 1


def test_a_notification_that_arrives_twice_moves_the_deploy_once(
    on_jenkins, jenkins_server, user, client, drive, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")

    assert notify(client, deploy, 1).status_code == 202
    assert notify(client, deploy, 1).status_code == 202  # both before a worker ran either
    drive()
    events_after_first = deploy.events.count()
    third = notify(client, deploy, 1)
    drive()

    assert third.status_code == 202
    assert third.json()["status"] == BuildStatus.SUCCEEDED
    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    assert deploy.events.count() == events_after_first
    assert deploy.events.filter(to_state=State.MERGING_TO_DEFAULT).count() == 1
    assert deploy.builds.count() == 1


@pytest.mark.parametrize(
    ("secret", "app_slug"),
    [("wrong", "demo-shop"), ("", "demo-shop"), (HOOK_SECRET, "no-such-app")],
)
def test_a_notification_with_a_bad_secret_is_refused_and_changes_nothing(
    on_jenkins,
    jenkins_server,
    user,
    client,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
    secret,
    app_slug,
):
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")
    events = deploy.events.count()

    response = notify(client, deploy, 1, secret=secret, application=app_slug)

    assert response.status_code == 403
    assert HOOK_SECRET not in response.content.decode()
    assert sent_tasks.sent == []
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert deploy.events.count() == events
    assert deploy.builds.get().status == BuildStatus.RUNNING


def test_no_secret_in_the_environment_refuses_every_notification(
    on_jenkins, user, client, drive, sent_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    monkeypatch.delenv(on_jenkins.hook_secret_variable)

    assert notify(client, deploy, 1, secret="").status_code == 403
    assert sent_tasks.sent == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("not json", 400),
        ('["a list"]', 400),
        ('{"application": "demo-shop", "deploy_id": "x", "attempt": 1}', 400),
        ('{"application": "demo-shop", "deploy_id": 999999, "attempt": 1}', 404),
    ],
)
def test_a_malformed_notification_gets_a_clear_error(on_jenkins, client, body, status):
    response = client.post(
        "/hooks/jenkins/",
        body,
        content_type="application/json",
        headers={"X-Fatcontroller-Secret": HOOK_SECRET},
    )
    assert response.status_code == status
    assert response.json()["error"]


def test_the_hook_takes_only_posts(client):
    assert client.get("/hooks/jenkins/").status_code == 405


def test_a_missed_notification_is_caught_by_the_poller(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")

    assert building.poll_builds() == 1
    drive()

    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    assert building.poll_builds() == 0  # nothing left to follow


def test_the_poller_copies_the_log_in_parts_while_jenkins_builds(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.build_seconds = 2.0
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")
    seen_offsets = [0]

    def jenkins_wrote_more():
        record = jenkins_server.builds(JOB)[0]
        return record.result or len(record.log.encode()) > seen_offsets[-1]

    while not jenkins_result(jenkins_server, 1):
        wait_until(jenkins_wrote_more, what="more log")
        building.poll_builds()
        drive()
        seen_offsets.append(Build.objects.get(deploy=deploy).backend_log_offset)
    building.poll_builds()
    drive()

    build = Build.objects.get(deploy=deploy)
    jenkins_log = jenkins_server.builds(JOB)[0].log
    assert build.status == BuildStatus.SUCCEEDED
    # Copied in more than one part, each once: the stored log is Jenkins' log, no repeats.
    assert len({offset for offset in seen_offsets if offset}) > 1
    assert jenkins_log.startswith(build.log)
    assert build.log.count("Started by user") == 1
    assert build.backend_log_offset == len(build.log.encode())


def test_a_red_build_holds_the_slot_with_a_deadline(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.plan(JOB, "fail")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")

    building.poll_builds()
    drive()

    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.BUILD_FAILED
    assert build.status == BuildStatus.FAILED
    assert "FAILURE" in build.summary
    held_for = deploy.held_until - timezone.now()
    assert 9 * 60 < held_for.total_seconds() <= 10 * 60
    assert "held for 10 minutes" in deploy.events.last().message


def test_a_flaky_build_retried_from_the_button_passes_and_merges(
    on_jenkins,
    jenkins_server,
    user,
    other_user,
    client,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
):
    jenkins_server.plan(JOB, "flake")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    with django_capture_on_commit_callbacks(execute=True):
        waiting = actions.queue_deploy(
            application="demo-shop",
            branch="feature/flaky-test",
            mode="merge_only",
            requester=other_user,
        )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the first build")
    assert notify(client, deploy, 1).status_code == 202
    drive()
    assert Deploy.objects.get(pk=deploy.pk).state == State.BUILD_FAILED

    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/deploys/{deploy.pk}/retry-build/")
    assert response.status_code == 302
    drive()
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert deploy.held_until is None
    assert Deploy.objects.get(pk=waiting.pk).state == State.QUEUED  # the slot stayed ours

    wait_until(lambda: jenkins_result(jenkins_server, 2), what="the second build")
    assert notify(client, deploy, 2).status_code == 202
    drive()

    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    attempts = list(deploy.builds.order_by("attempt").values_list("attempt", "status"))
    assert attempts == [(1, BuildStatus.FAILED), (2, BuildStatus.SUCCEEDED)]
    ours = [b for b in jenkins_server.builds(JOB) if b.parameters["FC_DEPLOY_ID"] == str(deploy.pk)]
    assert [b.parameters["FC_BUILD_ATTEMPT"] for b in ours] == ["1", "2"]
    # The slot went on to the next deploy only now.
    assert Deploy.objects.get(pk=waiting.pk).state != State.QUEUED


def test_automatic_retries_pass_a_flaky_build_without_holding(
    on_jenkins, jenkins_server, user, client, drive, sent_tasks, django_capture_on_commit_callbacks
):
    Application.objects.filter(pk=on_jenkins.pk).update(build_auto_retries=2)
    jenkins_server.plan(JOB, "flake")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the first build")
    building.poll_builds()
    drive()  # fails, retried at once: a new attempt is handed to Jenkins
    wait_until(lambda: jenkins_result(jenkins_server, 2), what="the second build")
    building.poll_builds()
    drive()

    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    assert not deploy.events.filter(to_state=State.BUILD_FAILED).exists()
    assert deploy.events.filter(message__contains="Retrying automatically (1 of 2)").exists()
    assert deploy.builds.count() == 2


def test_automatic_retries_stop_at_their_limit_and_then_hold(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    Application.objects.filter(pk=on_jenkins.pk).update(build_auto_retries=1)
    jenkins_server.plan(JOB, "fail")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    for number in (1, 2):
        wait_until(lambda n=number: jenkins_result(jenkins_server, n), what=f"build {number}")
        building.poll_builds()
        drive()

    deploy.refresh_from_db()
    assert deploy.state == State.BUILD_FAILED
    assert deploy.builds.count() == 2
    assert len(jenkins_server.builds(JOB)) == 2


def test_bad_jenkins_credentials_fail_the_build_clearly_and_keep_the_slot(
    on_jenkins,
    jenkins_server,
    user,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
    settings,
):
    settings.JENKINS_TOKEN = "not-the-token"
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )

    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.BUILD_FAILED
    assert build.status == BuildStatus.ERROR
    message = deploy.events.last().message
    assert "401" in message and "JENKINS_TOKEN" in message
    assert "not-the-token" not in message
    assert jenkins_server.builds(JOB) == []


def test_jenkins_down_at_the_start_is_retried_then_held_with_the_reason(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.down()
    with pytest.raises(Retry):  # the step asks Celery to run it again later
        queue_and_drive(
            on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
        )
    deploy = Deploy.objects.get(branch="feature/clean-merge")
    assert deploy.state == State.BUILDING
    assert deploy.builds.get().status == BuildStatus.PENDING  # given back for the next try
    with pytest.raises(Retry):
        run_build.apply(args=[deploy.pk], throw=True)

    run_build.push_request(retries=run_build.max_retries)  # the last try
    try:
        run_build.run(deploy.pk)
    finally:
        run_build.pop_request()

    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.BUILD_FAILED
    assert build.status == BuildStatus.ERROR
    assert "did not answer" in build.summary
    assert "repeated tries" in build.summary
    # Told once while retrying, not once per try.
    assert deploy.events.filter(message__contains="trying again shortly").count() == 1


def test_jenkins_down_mid_build_is_told_once_and_the_build_goes_on_when_it_is_back(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.build_seconds = 1.0
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")

    jenkins_server.down()
    for _ in range(3):
        building.poll_builds()
        drive()
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert deploy.events.filter(message__contains="did not answer").count() == 1
    assert Build.objects.get(deploy=deploy).trouble

    jenkins_server.up()
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the build to finish")
    building.poll_builds()
    drive()
    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    assert deploy.events.filter(message__contains="answers again").count() == 1
    assert Build.objects.get(deploy=deploy).trouble == ""


def test_jenkins_away_past_the_build_time_limit_ends_the_wait(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.plan(JOB, "hang")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")
    jenkins_server.down()
    Build.objects.filter(deploy=deploy).update(
        started_at=timezone.now() - timezone.timedelta(seconds=on_jenkins.build_timeout_seconds + 1)
    )

    building.poll_builds()
    drive()

    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.BUILD_FAILED
    assert build.status == BuildStatus.ERROR
    assert "outcome is unknown" in build.summary


def test_a_hanging_build_is_aborted_at_the_time_limit(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.plan(JOB, "hang")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")
    building.poll_builds()
    drive()
    Build.objects.filter(deploy=deploy).update(
        started_at=timezone.now() - timezone.timedelta(seconds=on_jenkins.build_timeout_seconds + 1)
    )

    building.poll_builds()
    drive()

    deploy.refresh_from_db()
    assert deploy.state == State.BUILD_FAILED
    assert "limit: aborted" in deploy.builds.get().summary
    wait_until(lambda: jenkins_result(jenkins_server, 1) == "ABORTED", what="Jenkins to abort")


def test_cancelling_a_deploy_aborts_its_jenkins_build(
    on_jenkins, jenkins_server, user, client, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.plan(JOB, "hang")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")
    building.poll_builds()
    drive()  # the build number is known now

    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/deploys/{deploy.pk}/cancel/").status_code == 302
    assert sent_tasks.sent == [("builds.tasks.abort_builds", deploy.pk)]
    drive()

    wait_until(lambda: jenkins_result(jenkins_server, 1) == "ABORTED", what="Jenkins to abort")
    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.CANCELLED
    assert build.status == BuildStatus.ABORTED
    assert deploy.events.filter(message__contains="aborted on jenkins").exists()
    # A late notification for the aborted build changes nothing.
    assert notify(client, deploy, 1).status_code == 202
    assert sent_tasks.sent == []


def test_cancelling_while_the_build_waits_in_jenkins_queue_cancels_the_queue_item(
    on_jenkins, jenkins_server, user, drive, sent_tasks, django_capture_on_commit_callbacks
):
    jenkins_server.queue_delay = 60
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )

    with django_capture_on_commit_callbacks(execute=True):
        actions.cancel(deploy, actor=user)
    drive()

    assert Deploy.objects.get(pk=deploy.pk).state == State.CANCELLED
    assert Build.objects.get(deploy=deploy).status == BuildStatus.ABORTED
    jenkins_server.queue_delay = 0
    # The item is gone from Jenkins' queue: nothing is ever built.
    assert wait_until(
        lambda: any(path.startswith("/queue/cancelItem") for _, path in jenkins_server.requests),
        what="the queue item cancelled",
    )
    assert jenkins_server.builds(JOB) == []


def failed_build_with_one_waiting(app, jenkins_server, user, other_user, drive, capture):
    """A deploy whose first build failed, holding the slot; another deploy waits behind it.
    A second build of it would hang."""
    jenkins_server.plan(JOB, "fail", "hang")
    deploy = queue_and_drive(app, user, "feature/clean-merge", drive, capture)
    with capture(execute=True):
        waiting = actions.queue_deploy(
            application="demo-shop",
            branch="feature/flaky-test",
            mode="merge_only",
            requester=other_user,
        )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the build")
    building.poll_builds()
    drive()
    assert Deploy.objects.get(pk=deploy.pk).state == State.BUILD_FAILED
    return deploy, waiting


def test_the_hold_window_passes_and_the_slot_goes_to_the_next_deploy(
    on_jenkins,
    jenkins_server,
    user,
    other_user,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
):
    deploy, waiting = failed_build_with_one_waiting(
        on_jenkins, jenkins_server, user, other_user, drive, django_capture_on_commit_callbacks
    )

    with django_capture_on_commit_callbacks(execute=True):
        resume_deploys()  # inside the window: nothing moves
    assert Deploy.objects.get(pk=deploy.pk).state == State.BUILD_FAILED
    assert Deploy.objects.get(pk=waiting.pk).state == State.QUEUED

    Deploy.objects.filter(pk=deploy.pk).update(
        held_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        resume_deploys()

    deploy.refresh_from_db()
    assert deploy.state == State.ABANDONED
    assert "10-minute hold window" in deploy.events.last().message
    assert "slot goes to the next deploy" in deploy.events.last().message
    assert Deploy.objects.get(pk=waiting.pk).state == State.MERGING


def test_a_retry_inside_the_hold_window_keeps_the_slot_past_its_end(
    on_jenkins,
    jenkins_server,
    user,
    other_user,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
):
    deploy, waiting = failed_build_with_one_waiting(
        on_jenkins, jenkins_server, user, other_user, drive, django_capture_on_commit_callbacks
    )
    with django_capture_on_commit_callbacks(execute=True):
        actions.retry_build(Deploy.objects.get(pk=deploy.pk), actor=user)
    drive()

    with django_capture_on_commit_callbacks(execute=True):
        resume_deploys()

    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert deploy.held_until is None
    assert Deploy.objects.get(pk=waiting.pk).state == State.QUEUED
    assert pipeline.expire_holds() == 0


def test_resume_does_not_start_a_handed_over_build_twice(
    on_jenkins,
    jenkins_server,
    user,
    drive,
    sent_tasks,
    django_capture_on_commit_callbacks,
    settings,
):
    jenkins_server.plan(JOB, "hang")
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_server.builds(JOB), what="the build to start")
    long_ago = timezone.now() - settings.FC_STALL_AFTER - timezone.timedelta(seconds=5)
    Deploy.objects.filter(pk=deploy.pk).update(updated_at=long_ago)
    Build.objects.filter(deploy=deploy).update(heartbeat_at=long_ago)

    resume_deploys()

    assert Build.objects.get(deploy=deploy).status == BuildStatus.RUNNING
    assert ("builds.tasks.run_build", deploy.pk) not in sent_tasks.sent
    assert len(jenkins_server.builds(JOB)) == 1


def test_a_finished_build_whose_log_jenkins_will_not_give_is_concluded_by_its_result(
    on_jenkins, jenkins_server, user, client, drive, sent_tasks, django_capture_on_commit_callbacks
):
    """A build discarder removed the log, or the token may not read it: the result still
    stands, and the timeline says the log is missing and why (once, not on every poll)."""
    deploy = queue_and_drive(
        on_jenkins, user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    wait_until(lambda: jenkins_result(jenkins_server, 1), what="the Jenkins build")
    jenkins_server.set_status_override(404, f"/job/{JOB}/1/logText")

    for _ in range(2):  # the notification, then the poller: the first concludes it
        sent_tasks.sent.append(("builds.tasks.sync_build", deploy.pk))
        drive()

    deploy.refresh_from_db()
    build = deploy.builds.get()
    assert deploy.state == State.MERGED
    assert build.status == BuildStatus.SUCCEEDED
    missing = [e.message for e in deploy.events.all() if "log could not be read" in e.message]
    assert len(missing) == 1, missing
    assert "build 1: its log could not be read from jenkins" in missing[0]
    assert "log could not be read" in build.log
