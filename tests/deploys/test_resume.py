from datetime import timedelta

from django.utils import timezone

from builds.models import Build, BuildStatus
from deploys import slot
from deploys.models import Deploy
from deploys.resume import resume_deploys
from deploys.states import State


def make(application, user, branch, state, **fields) -> Deploy:
    return Deploy.objects.create(
        application=application, branch=branch, requester=user, state=state, **fields
    )


def age(deploy, seconds):
    Deploy.objects.filter(pk=deploy.pk).update(
        updated_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_free_slot_with_deploys_waiting_is_handed_on(application, user):
    waiting = make(application, user, "feature/a", State.QUEUED)
    resume_deploys()
    waiting.refresh_from_db()
    assert waiting.state == State.MERGING


def test_a_locked_application_is_left_waiting(application, user):
    waiting = make(application, user, "feature/a", State.QUEUED)
    slot.lock(application, actor=user, reason="freeze")
    resume_deploys()
    waiting.refresh_from_db()
    assert waiting.state == State.QUEUED


def test_a_stalled_step_is_sent_again_and_a_fresh_one_is_not(
    application, user, other_user, sent_tasks, settings
):
    settings.FC_STALL_AFTER = timedelta(minutes=10)
    stalled = make(application, user, "feature/a", State.MERGING)
    age(stalled, 11 * 60)
    resume_deploys()
    assert sent_tasks.sent == [("deploys.tasks.make_candidate", stalled.pk)]

    sent_tasks.sent.clear()
    resume_deploys()  # it was just sent again: not stalled any more
    assert sent_tasks.sent == []


def test_a_building_deploy_whose_build_died_gets_its_attempt_back(
    application, user, sent_tasks, settings
):
    settings.FC_STALL_AFTER = timedelta(minutes=10)
    deploy = make(application, user, "feature/a", State.BUILDING, candidate_sha="a" * 40)
    build = Build.objects.create(
        deploy=deploy,
        attempt=1,
        status=BuildStatus.RUNNING,
        heartbeat_at=timezone.now() - timedelta(minutes=11),
    )
    age(deploy, 11 * 60)
    resume_deploys()
    build.refresh_from_db()
    assert build.status == BuildStatus.PENDING
    assert sent_tasks.sent == [("builds.tasks.run_build", deploy.pk)]


def test_a_long_build_that_is_alive_is_left_alone(application, user, sent_tasks, settings):
    settings.FC_STALL_AFTER = timedelta(minutes=10)
    deploy = make(application, user, "feature/a", State.BUILDING, candidate_sha="a" * 40)
    build = Build.objects.create(
        deploy=deploy, attempt=1, status=BuildStatus.RUNNING, heartbeat_at=timezone.now()
    )
    age(deploy, 60 * 60)
    resume_deploys()
    build.refresh_from_db()
    assert build.status == BuildStatus.RUNNING
    assert sent_tasks.sent == []
