"""The legacy target against the stand-in Jenkins, through the real python-jenkins 1.8.

No mocks of Jenkins: the stand-in (tests/jenkins_standin.py) answers as Jenkins does, and
`plan(job, *outcomes)` decides how each build of a job ends. Waiting is polling with a
deadline, never a sleep.
"""

from dataclasses import dataclass

import pytest

from builds.jenkins_client import JenkinsClient
from clusters.models import LegacyRun, Placement, PlacementKind, ProcessType, Service
from clusters.targets import legacy, target_for
from clusters.targets.base import Progress, TargetRefused, TargetUnavailable, Watch
from deploys.models import Application
from tests.clusters import ledgers
from tests.jenkins_standin import JenkinsStandin
from tests.waiting import wait_until

USER, TOKEN, JOB = "legacy-deployer", "l3gacy-token", "deploy-worker"
REPOSITORY = "registry.example.com:5000/shop"
COMMIT = "c" * 40


@dataclass
class Ledger(ledgers.Ledger):
    commit: str = COMMIT  # the legacy job is told the commit


class WorkerDied(BaseException):
    """A worker killed at a chosen point (BaseException: nothing in the target catches it)."""


@pytest.fixture
def standin():
    with JenkinsStandin(USER, TOKEN, jobs=(JOB,)) as server:
        server.queue_delay = 0
        server.build_seconds = 0.3
        yield server
    assert server.server_errors == []  # a bug in the stand-in itself


@pytest.fixture
def on_standin(standin, settings):
    settings.FC_LEGACY_JENKINS_URL = standin.url
    settings.FC_LEGACY_JENKINS_USER = USER
    settings.FC_LEGACY_JENKINS_TOKEN = TOKEN
    settings.JENKINS_URL = settings.JENKINS_USER = settings.JENKINS_TOKEN = ""
    settings.JENKINS_TIMEOUT = 5
    return standin


@pytest.fixture
def placement(db) -> Placement:
    app = Application.objects.create(
        slug="shop",
        name="Shop",
        git_remote_url="/nowhere.git",
        default_branch="main",
        image_repository=REPOSITORY,
    )
    service = Service.objects.create(
        application=app, name="worker", process_type=ProcessType.WORKER
    )
    return Placement.objects.create(
        service=service, kind=PlacementKind.LEGACY, legacy_job=JOB, legacy_version="1.0"
    )


@pytest.fixture
def target(on_standin, placement):
    return target_for(placement)


def observe_until_done(target, placement, handle, revision, timeout=10.0):
    """Observe until the run is out or failed; returns every observation, in order."""
    seen = []

    def done():
        answer = target.observe([Watch(placement, handle, revision)])[0]
        assert answer.error is None, answer.error
        seen.append(answer)
        return answer.progress is not Progress.PROGRESSING

    wait_until(done, timeout, f"job run {handle} to end")
    return seen


def params(build) -> dict[str, str]:
    return build.parameters


# ------------------------------------------------------------------------------ naming


def test_naming_and_words(placement):
    target = target_for(placement)
    assert isinstance(target, legacy.LegacyTarget)
    assert target.name(placement) == f"worker (legacy job {JOB})"
    assert target.label("1.4.2") == "1.4.2"
    assert (target.start_word, target.instance_word) == ("job run", "job")
    assert target.image_exists(f"{REPOSITORY}:nowhere-to-be-found") is True


def test_versions_and_repositories_of_images():
    assert legacy.version_of("registry.example.com:5000/shop:1.4.2") == "1.4.2"
    assert legacy.version_of("registry.example.com:5000/shop") == ""
    assert legacy.version_of("shop:") == ""
    assert legacy.repository_of("registry.example.com:5000/shop:1.4.2") == REPOSITORY
    assert legacy.repository_of(REPOSITORY) == REPOSITORY


def test_current_is_the_last_successful_run_else_the_recorded_version(placement):
    target = target_for(placement)
    assert target.current(placement) == "1.0"

    def run(version, result, request):
        return LegacyRun.objects.create(
            placement=placement,
            purpose="deploy",
            request=request,
            version=version,
            result=result,
            finished_at="2024-01-01T00:00:00Z" if result else None,
        )

    run("1.1", "FAILURE", "a")
    run("1.2", "", "b")  # still running
    assert target.current(placement) == "1.0"
    run("1.3", "SUCCESS", "c")
    run("1.4", "UNSTABLE", "d")
    assert target.current(placement) == "1.3"

    Placement.objects.filter(pk=placement.pk).update(legacy_version="")
    placement.refresh_from_db()
    LegacyRun.objects.filter(placement=placement).delete()
    assert target.current(placement) == ""


def test_settings_fall_back_to_jenkins_and_a_missing_url_is_refused_clearly(
    standin, settings, placement
):
    settings.FC_LEGACY_JENKINS_URL = settings.FC_LEGACY_JENKINS_USER = ""
    settings.FC_LEGACY_JENKINS_TOKEN = ""
    settings.JENKINS_URL, settings.JENKINS_USER, settings.JENKINS_TOKEN = standin.url, USER, TOKEN
    target = target_for(placement)
    assert (target.url, target.user, target.token) == (standin.url, USER, TOKEN)
    assert target_for(placement) is target  # one per thread and settings

    settings.FC_LEGACY_JENKINS_USER = "someone-else"
    assert target_for(placement).user == "someone-else"

    settings.JENKINS_URL = ""
    nowhere = target_for(placement)
    assert nowhere.name(placement) == f"worker (legacy job {JOB})"  # naming needs no Jenkins
    with pytest.raises(
        TargetRefused, match=r"^FC_LEGACY_JENKINS_URL \(or JENKINS_URL\) is not set"
    ):
        nowhere.start(placement, f"{REPOSITORY}:1.1", Ledger())
    assert not LegacyRun.objects.exists()

    settings.FC_LEGACY_JENKINS_URL = "jenkins.example:8080"
    with pytest.raises(TargetRefused, match="not an http"):
        target_for(placement).start(placement, f"{REPOSITORY}:1.1", Ledger())


# ------------------------------------------------------------------------------- start


def test_start_records_first_then_triggers_once_with_the_parameters(target, placement, standin):
    ledger = Ledger()
    handle = target.start(placement, f"{REPOSITORY}:1.1", ledger)

    # What a restore needs is written before anything else, the handle before the trigger.
    assert ledger.writes[0] == {"revision_before": "1.0"}
    assert ledger.writes[1] == {"revision_made": "1.1"}
    assert ledger.writes[2] == {"start_handle": handle}
    run = LegacyRun.objects.get(pk=int(handle))
    assert (run.purpose, run.version, run.image, run.commit) == (
        "deploy",
        "1.1",
        f"{REPOSITORY}:1.1",
        COMMIT,
    )
    assert run.queue_id is not None and run.triggered_at is not None
    assert len(run.request) == 32

    builds = wait_until(lambda: standin.builds(JOB), what="the build")
    assert len(builds) == 1
    assert params(builds[0]) == {
        "SERVICE": "worker",
        "COMMIT": COMMIT,
        "IMAGE": f"{REPOSITORY}:1.1",
        "VERSION": "1.1",
        "FC_REQUEST": run.request,
    }
    assert builds[0].queue_id == run.queue_id

    # Asked again (a tick after a lost answer), the same run is adopted: no second trigger.
    assert target.start(placement, f"{REPOSITORY}:1.1", ledger) == handle
    assert len(standin.builds(JOB)) == 1
    assert LegacyRun.objects.count() == 1


def test_a_placement_with_no_recorded_version_is_refused_and_nothing_is_started(
    target, placement, standin
):
    Placement.objects.filter(pk=placement.pk).update(legacy_version="")
    placement.refresh_from_db()
    ledger = Ledger()
    with pytest.raises(TargetRefused) as excinfo:
        target.start(placement, f"{REPOSITORY}:1.1", ledger)
    message = str(excinfo.value)
    assert f"no version is recorded for worker (legacy job {JOB})" in message
    assert "set legacy_version" in message and "config file" in message
    assert ledger.writes == []
    assert not LegacyRun.objects.exists()
    assert standin.builds(JOB) == []


def test_an_image_without_a_tag_is_refused(target, placement, standin):
    with pytest.raises(TargetRefused, match="has no tag"):
        target.start(placement, REPOSITORY, Ledger())
    assert standin.builds(JOB) == []


def test_a_start_adopted_after_a_death_before_the_trigger_builds_once(target, placement, standin):
    class DiesAfterTheHandle(Ledger):
        def write(self, **fields):
            super().write(**fields)
            if "start_handle" in fields:
                raise WorkerDied

    dying = DiesAfterTheHandle()
    with pytest.raises(WorkerDied):
        target.start(placement, f"{REPOSITORY}:1.1", dying)
    run = LegacyRun.objects.get()
    assert run.queue_id is None and run.triggered_at is None
    assert standin.builds(JOB) == []

    # Another worker, with the ledger as the database kept it.
    ledger = Ledger(**{k: getattr(dying, k) for k in ("revision_before", "revision_made")})
    ledger.start_handle = dying.start_handle
    assert target.start(placement, f"{REPOSITORY}:1.1", ledger) == str(run.pk)
    seen = observe_until_done(target, placement, str(run.pk), "1.1")
    assert seen[-1].progress is Progress.OUT
    assert len(standin.builds(JOB)) == 1
    assert LegacyRun.objects.count() == 1


@pytest.mark.parametrize("built_already", [False, True])
def test_a_start_adopted_after_a_death_after_the_trigger_is_found_by_its_request(
    target, placement, standin, monkeypatch, built_already
):
    if not built_already:
        standin.queue_delay = 3  # still waiting in the queue when it is looked for
    real_trigger = JenkinsClient.trigger

    def trigger_then_die(self, job, parameters):
        real_trigger(self, job, parameters)
        raise WorkerDied  # the queue id never reached the database

    monkeypatch.setattr(JenkinsClient, "trigger", trigger_then_die)
    ledger = Ledger()
    with pytest.raises(WorkerDied):
        target.start(placement, f"{REPOSITORY}:1.1", ledger)
    monkeypatch.setattr(JenkinsClient, "trigger", real_trigger)
    run = LegacyRun.objects.get()
    assert run.queue_id is None and run.triggered_at is not None
    if built_already:
        wait_until(lambda: standin.builds(JOB), what="the build")

    sent_before = [r for r in standin.request_log if r.path.endswith("/buildWithParameters")]
    assert target.start(placement, f"{REPOSITORY}:1.1", ledger) == str(run.pk)
    sent_after = [r for r in standin.request_log if r.path.endswith("/buildWithParameters")]
    assert sent_after == sent_before  # found, not sent again
    run.refresh_from_db()
    assert run.queue_id is not None
    if built_already:
        assert run.build_number == standin.builds(JOB)[0].number
    else:
        assert standin.builds(JOB) == []
    seen = observe_until_done(target, placement, str(run.pk), "1.1", timeout=15)
    assert seen[-1].progress is Progress.OUT
    assert len(standin.builds(JOB)) == 1


# ----------------------------------------------------------------------------- observe


def test_a_successful_run_is_followed_to_out_with_its_log_copied_by_offset(
    target, placement, standin
):
    standin.build_seconds = 1.0
    ledger = Ledger()
    handle = target.start(placement, f"{REPOSITORY}:1.1", ledger)
    seen = observe_until_done(target, placement, handle, "1.1")

    assert seen[0].progress is Progress.PROGRESSING
    assert (seen[0].running, seen[0].desired) == (0, 1)
    assert all(s.reason for s in seen[:-1])  # what it waits for, for the timeout's message
    assert seen[-1].progress is Progress.OUT
    assert (seen[-1].running, seen[-1].desired) == (1, 1)

    run = LegacyRun.objects.get(pk=int(handle))
    build = standin.builds(JOB)[0]
    assert run.result == "SUCCESS" and run.finished_at is not None
    assert run.build_number == build.number
    assert run.build_url.endswith(f"/job/{JOB}/{build.number}/")
    assert build.log.startswith(run.log)
    assert "Rollout complete" in run.log
    assert run.log_offset == len(run.log.encode())
    # Read a part at a time: each read started where the last one stopped.
    starts = [
        int(r.query.split("start=")[1])
        for r in standin.request_log
        if r.path.endswith("/progressiveText")
    ]
    assert len(starts) > 1 and starts == sorted(starts) and starts[0] == 0
    assert len(set(starts)) > 1
    assert target.current(placement) == "1.1"

    # Finished: later looks (the soak) ask Jenkins nothing.
    asked = len(standin.request_log)
    again = target.observe([Watch(placement, handle, "1.1", settled=True)])[0]
    assert again.progress is Progress.OUT
    assert len(standin.request_log) == asked


def test_a_long_log_keeps_its_end(target, placement, standin, settings):
    settings.FC_BUILD_LOG_MAX_CHARS = 40
    handle = target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    observe_until_done(target, placement, handle, "1.1")
    run = LegacyRun.objects.get(pk=int(handle))
    assert len(run.log) == 40
    build_log = standin.builds(JOB)[0].log
    assert run.log == build_log[: run.log_offset][-40:]
    assert run.log_offset > 40


@pytest.mark.parametrize(
    ("outcome", "result", "quoted"),
    [
        ("fail", "FAILURE", "ERROR: rollout failed / + exit 1"),
        ("unstable", "UNSTABLE", "marked build as unstable"),
    ],
)
def test_a_failed_run_fails_with_the_job_the_build_the_result_and_the_log(
    target, placement, standin, outcome, result, quoted
):
    standin.plan(JOB, outcome)
    handle = target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    last = observe_until_done(target, placement, handle, "1.1")[-1]
    number = standin.builds(JOB)[0].number
    assert last.progress is Progress.FAILED
    assert last.reason.startswith(f"legacy job {JOB} build #{number} ended {result}: ")
    assert quoted in last.reason
    assert len(last.reason) < 500
    run = LegacyRun.objects.get(pk=int(handle))
    assert run.result == result and run.finished_at is not None
    assert target.current(placement) == "1.0"  # a failed run deployed nothing


def test_an_aborted_build_fails(target, placement, standin):
    standin.plan(JOB, "hang")
    handle = target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    build = wait_until(lambda: standin.builds(JOB), what="the build")[0]
    JenkinsClient(standin.url, USER, TOKEN, 5).stop(JOB, build.number)
    last = observe_until_done(target, placement, handle, "1.1")[-1]
    assert last.progress is Progress.FAILED
    assert f"build #{build.number} ended ABORTED" in last.reason
    assert "Aborted by" in last.reason


def test_observing_an_unknown_handle_is_an_error_of_that_watch_only(target, placement, standin):
    handle = target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    unknown, ours = target.observe(
        [Watch(placement, "999999", "1.1"), Watch(placement, handle, "1.1")]
    )
    assert isinstance(unknown.error, TargetRefused)
    assert ours.error is None


# ------------------------------------------------------------------------------ errors


def test_jenkins_down_is_unavailable_and_leaves_the_run_to_adopt(target, placement, standin):
    standin.down()
    ledger = Ledger()
    with pytest.raises(TargetUnavailable) as excinfo:
        target.start(placement, f"{REPOSITORY}:1.1", ledger)
    assert str(excinfo.value) == f"Jenkins at {standin.url} did not answer: Connection refused"
    assert TOKEN not in str(excinfo.value)
    run = LegacyRun.objects.get()
    assert run.queue_id is None and ledger.start_handle == str(run.pk)

    standin.up()
    assert target.start(placement, f"{REPOSITORY}:1.1", ledger) == str(run.pk)
    wait_until(lambda: standin.builds(JOB), what="the build")
    standin.down()
    answer = target.observe([Watch(placement, ledger.start_handle, "1.1")])[0]
    assert isinstance(answer.error, TargetUnavailable)
    standin.up()
    assert observe_until_done(target, placement, ledger.start_handle, "1.1")[-1].progress is (
        Progress.OUT
    )
    assert len(standin.builds(JOB)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_is_unavailable(target, placement, standin, status):
    standin.set_status_override(status)
    with pytest.raises(TargetUnavailable, match=f"Jenkins answered {status} when asked to"):
        target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    standin.set_status_override(None)
    assert standin.builds(JOB) == []


def test_wrong_credentials_are_refused_naming_the_legacy_settings(
    target, placement, standin, settings
):
    settings.FC_LEGACY_JENKINS_TOKEN = "wrong-token"
    with pytest.raises(TargetRefused) as excinfo:
        target_for(placement).start(placement, f"{REPOSITORY}:1.1", Ledger())
    message = str(excinfo.value)
    assert message == (
        "Jenkins refused the credentials (401): check FC_LEGACY_JENKINS_USER and "
        "FC_LEGACY_JENKINS_TOKEN"
    )
    assert "wrong-token" not in message
    assert LegacyRun.objects.get().triggered_at is None  # refused: nothing was queued


def test_a_user_without_permission_is_refused(target, placement, standin):
    standin.set_forbidden(True)
    with pytest.raises(TargetRefused, match=f"the user '{USER}' lacks permission"):
        target.start(placement, f"{REPOSITORY}:1.1", Ledger())


def test_a_missing_job_is_refused_and_its_restore_is_not_needed(target, placement, standin):
    Placement.objects.filter(pk=placement.pk).update(legacy_job="deploy-nothing")
    placement.refresh_from_db()
    ledger = Ledger()
    with pytest.raises(TargetRefused, match="^Jenkins has no job called 'deploy-nothing'$"):
        target.start(placement, f"{REPOSITORY}:1.1", ledger)

    # Nothing reached Jenkins, so the placement still runs what it ran: nothing to put back.
    handle = target.restore(placement, ledger.revision_before, ledger)
    assert handle == legacy.NOT_NEEDED == ledger.restore_handle
    answer = target.observe([Watch(placement, handle, "1.0")])[0]
    assert answer.progress is Progress.OUT and answer.error is None
    assert LegacyRun.objects.count() == 1


def test_an_unparameterized_job_is_refused(target, placement, standin):
    standin.define_parameters(JOB, None)
    with pytest.raises(TargetRefused, match=f"job '{JOB}' takes no parameters"):
        target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    assert standin.builds(JOB) == []


def test_a_stale_crumb_is_passing_trouble_and_a_new_one_is_fetched(target, placement, standin):
    target.start(placement, f"{REPOSITORY}:1.1", Ledger())
    standin._sessions.clear()  # Jenkins restarted: the crumb's web session is gone
    ledger = Ledger()
    with pytest.raises(TargetUnavailable, match="CSRF crumb"):
        target.start(placement, f"{REPOSITORY}:1.2", ledger)
    target.start(placement, f"{REPOSITORY}:1.2", ledger)
    assert wait_until(lambda: len(standin.builds(JOB)) == 2, what="two builds")


# ----------------------------------------------------------------------------- restore


def test_a_failed_start_is_restored_with_the_recorded_version_and_its_commit(
    target, placement, standin
):
    LegacyRun.objects.create(
        placement=placement,
        purpose="deploy",
        request="earlier",
        version="1.0",
        commit="b" * 40,
        result="SUCCESS",
        finished_at="2024-01-01T00:00:00Z",
    )
    standin.plan(JOB, "fail", "succeed")
    ledger = Ledger()
    started = target.start(placement, f"{REPOSITORY}:1.1", ledger)
    assert observe_until_done(target, placement, started, "1.1")[-1].progress is Progress.FAILED

    handle = target.restore(placement, ledger.revision_before, ledger)
    assert ledger.restore_handle == handle != started
    assert target.restore(placement, ledger.revision_before, ledger) == handle  # adopted
    run = LegacyRun.objects.get(pk=int(handle))
    assert (run.purpose, run.version, run.image, run.commit) == (
        "restore",
        "1.0",
        f"{REPOSITORY}:1.0",
        "b" * 40,
    )
    assert observe_until_done(target, placement, handle, "1.0")[-1].progress is Progress.OUT
    builds = standin.builds(JOB)
    assert len(builds) == 2
    assert params(builds[1]) == {
        "SERVICE": "worker",
        "COMMIT": "b" * 40,
        "IMAGE": f"{REPOSITORY}:1.0",
        "VERSION": "1.0",
        "FC_REQUEST": run.request,
    }
    assert target.current(placement) == "1.0"


def test_a_hung_start_is_stopped_before_the_restore_runs(target, placement, standin):
    standin.plan(JOB, "hang", "succeed")
    ledger = Ledger()
    started = target.start(placement, f"{REPOSITORY}:1.1", ledger)
    wait_until(lambda: standin.builds(JOB), what="the hung build")
    answer = target.observe([Watch(placement, started, "1.1")])[0]
    assert answer.progress is Progress.PROGRESSING
    assert "has not finished" in answer.reason

    handle = target.restore(placement, "1.0", ledger)
    assert observe_until_done(target, placement, handle, "1.0")[-1].progress is Progress.OUT
    hung, restored = standin.builds(JOB)
    assert hung.result == "ABORTED"
    # The stopped start's run is over too, as Jenkins ended it: not shown running for ever.
    stopped = LegacyRun.objects.get(pk=int(started))
    assert (stopped.result, stopped.finished_at is not None) == ("ABORTED", True)
    assert restored.parameters["VERSION"] == "1.0"
    assert restored.result == "SUCCESS"
    assert target.current(placement) == "1.0"
