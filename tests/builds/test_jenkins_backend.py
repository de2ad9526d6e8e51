"""The Jenkins build backend against the stand-in Jenkins, through the real python-jenkins 1.8.

No mocks of python-jenkins: what it raises for each Jenkins answer is exactly what the backend
has to map (see tests/jenkins_standin.py). Waiting is polling with a deadline, never a sleep.
"""

import socket
import threading
import time

import pytest

from builds.backends import (
    BackendRefused,
    BackendUnavailable,
    BuildReport,
    BuildSpec,
    LogChunk,
    backend_for,
)
from builds.jenkins import JenkinsBackend, split_incomplete_utf8
from builds.models import Build
from deploys.models import Deploy
from tests.jenkins_standin import JenkinsStandin
from tests.waiting import wait_until

USER, TOKEN, JOB = "fatcontroller", "s3cret-token", "demo-shop"


@pytest.fixture
def standin():
    with JenkinsStandin(USER, TOKEN, jobs=(JOB,)) as server:
        server.queue_delay = 0
        server.build_seconds = 0.3
        yield server
    assert server.server_errors == []  # a bug in the stand-in itself
    assert server.callback_errors == []


@pytest.fixture
def backend(standin) -> JenkinsBackend:
    return JenkinsBackend(standin.url, USER, TOKEN, timeout=5)


@pytest.fixture
def deploy(application, user) -> Deploy:
    return Deploy.objects.create(
        application=application,
        branch="feature/x",
        requester=user,
        state="building",
        candidate_sha="a" * 40,
    )


def new_build(deploy: Deploy, attempt: int = 1) -> Build:
    return Build.objects.create(
        deploy=deploy,
        attempt=attempt,
        backend="jenkins",
        status="running",
        image_tag=f"demo-shop:{deploy.pk}-{attempt}",
    )


def spec_of(build: Build) -> BuildSpec:
    deploy = build.deploy
    return BuildSpec(
        deploy_id=deploy.pk,
        attempt=build.attempt,
        commit_sha=deploy.candidate_sha,
        candidate_ref=deploy.candidate_ref,
        branch=deploy.branch,
        image_tag=build.image_tag,
    )


def started(backend: JenkinsBackend, deploy: Deploy, attempt: int = 1) -> Build:
    build = new_build(deploy, attempt)
    backend.start(build, spec_of(build))
    return build


def run_to_end(backend: JenkinsBackend, build: Build, seen: list | None = None) -> BuildReport:
    """Poll status() until it says finished; every report along the way goes into `seen`."""
    reports = [] if seen is None else seen

    def finished():
        report = backend.status(build)
        reports.append(report)
        return report if report.finished else None

    return wait_until(finished, what=f"build {build.attempt} to finish")


def requests_to(standin: JenkinsStandin, method: str, path: str) -> list[int]:
    """The statuses the stand-in answered to method+path, in order."""
    return [r.status for r in standin.request_log if (r.method, r.path) == (method, path)]


# --------------------------------------------------------------------------- outcomes


def test_a_successful_build_is_followed_from_the_queue_to_its_result(standin, backend, deploy):
    build = started(backend, deploy)
    assert build.queue_id is not None
    assert Build.objects.get(pk=build.pk).queue_id == build.queue_id

    seen: list[BuildReport] = []
    report = run_to_end(backend, build, seen)
    assert seen[0].finished is False and seen[0].passed is None
    assert any(r.summary == "running as Jenkins build #1" for r in seen)
    assert report.passed is True and report.aborted is False
    assert report.summary.startswith("Jenkins build #1 SUCCESS")

    stored = Build.objects.get(pk=build.pk)
    assert (stored.build_number, build.build_number) == (1, 1)
    assert stored.external_url == build.external_url == f"{standin.url}job/{JOB}/1/"
    [record] = standin.builds(JOB)
    assert record.queue_id == build.queue_id
    assert record.parameters == spec_of(build).parameters()
    assert record.parameters["FC_BRANCH"] == "feature/x"
    # python-jenkins posted buildWithParameters, never the parameterless /build
    assert requests_to(standin, "POST", f"/job/{JOB}/buildWithParameters") == [201]
    assert requests_to(standin, "POST", f"/job/{JOB}/build") == []


def test_a_result_counts_as_finished_while_the_post_build_actions_run(standin, backend, deploy):
    release = threading.Event()
    standin.on_build_finished(lambda job, number, result: release.wait(5))
    build = started(backend, deploy)

    report = run_to_end(backend, build)
    try:
        assert standin.builds(JOB)[0].building is True  # still in its notification step
        assert report.passed is True
        assert report.summary == "Jenkins build #1 SUCCESS"  # no duration yet: it is 0
    finally:
        release.set()
    wait_until(lambda: not standin.builds(JOB)[0].building, what="post-production to end")
    assert backend.status(build).summary.startswith("Jenkins build #1 SUCCESS after ")


@pytest.mark.parametrize("outcome, result", [("fail", "FAILURE"), ("unstable", "UNSTABLE")])
def test_failed_and_unstable_builds_do_not_pass(standin, backend, deploy, outcome, result):
    standin.plan(JOB, outcome)
    report = run_to_end(backend, started(backend, deploy))
    assert report.finished is True
    assert report.passed is False
    assert report.aborted is False
    assert report.summary.startswith(f"Jenkins build #1 {result}")


def test_a_flaky_job_fails_then_passes_on_the_next_attempt(standin, backend, deploy):
    standin.plan(JOB, "flake")
    first = started(backend, deploy, attempt=1)
    assert run_to_end(backend, first).passed is False
    second = started(backend, deploy, attempt=2)
    assert second.queue_id != first.queue_id
    assert run_to_end(backend, second).passed is True
    assert [b.build_number for b in Build.objects.filter(deploy=deploy)] == [1, 2]
    attempts = [r.parameters["FC_BUILD_ATTEMPT"] for r in standin.builds(JOB)]
    assert attempts == ["1", "2"]


# ------------------------------------------------------------------------------ abort


def test_a_hung_build_is_stopped_and_reports_aborted(standin, backend, deploy):
    standin.plan(JOB, "hang")
    build = started(backend, deploy)

    def hung():
        backend.status(build)
        return "Waiting for the deployment lock" in backend.read_log(build, 0).text

    wait_until(hung, what="the build to hang")
    assert backend.status(build).finished is False

    backend.abort(build)
    report = run_to_end(backend, build)
    assert (report.passed, report.aborted) == (False, True)
    assert report.summary.startswith("Jenkins build #1 ABORTED")
    assert standin.builds(JOB)[0].result == "ABORTED"

    backend.abort(build)  # again, after the end: no harm
    assert requests_to(standin, "POST", f"/job/{JOB}/1/stop") == [302, 302]


def test_aborting_a_build_jenkins_does_not_have_is_quiet(standin, backend, deploy):
    build = new_build(deploy)
    build.queue_id, build.build_number = 41, 99
    backend.abort(build)
    assert requests_to(standin, "POST", f"/job/{JOB}/99/stop") == [404]

    seen = len(standin.request_log)
    never_started = new_build(deploy, attempt=2)
    backend.abort(never_started)  # no queue id, no number: nothing to do
    assert standin.request_log[seen:] == []


def test_abort_while_queued_cancels_the_queue_item(standin, backend, deploy):
    standin.queue_delay = 30
    build = started(backend, deploy)
    waiting = backend.status(build)
    assert waiting.finished is False
    assert waiting.summary.startswith("waiting in Jenkins' queue: In the quiet period")

    backend.abort(build)
    assert requests_to(standin, "POST", "/queue/cancelItem") == [204]
    report = backend.status(build)
    assert report == BuildReport(
        finished=True,
        passed=False,
        aborted=True,
        summary="the build was cancelled in Jenkins' queue",
    )
    assert standin.builds(JOB) == []
    assert build.build_number is None

    backend.abort(build)  # twice: the cancelled item is not an error
    assert requests_to(standin, "POST", "/queue/cancelItem") == [204, 500]


def test_abort_just_after_the_build_left_the_queue_stops_it(standin, backend, deploy):
    standin.plan(JOB, "hang")
    build = started(backend, deploy)
    wait_until(lambda: standin.builds(JOB), what="the build to leave the queue")
    assert build.build_number is None  # status() has not been asked yet

    backend.abort(build)  # cancelItem answers 500 "Could not cancel": stop the build instead
    assert requests_to(standin, "POST", "/queue/cancelItem") == [500]
    assert build.build_number == 1
    assert requests_to(standin, "POST", f"/job/{JOB}/1/stop") == [302]
    assert run_to_end(backend, build).aborted is True


# -------------------------------------------------------------------------------- log


def test_the_log_is_read_in_growing_byte_offsets_without_repeats(standin, backend, deploy):
    standin.build_seconds = 0.5
    deploy.branch = "feature/café-☕"
    deploy.save()
    build = new_build(deploy)
    assert backend.read_log(build, 0) == LogChunk("", 0)  # nothing to read before it starts
    backend.start(build, spec_of(build))

    chunks: list[str] = []
    offsets = [0]

    def read_more() -> bool:
        backend.status(build)
        chunk = backend.read_log(build, offsets[-1])
        assert chunk.next_offset >= offsets[-1]
        chunks.append(chunk.text)
        offsets.append(chunk.next_offset)
        return "Finished: SUCCESS\n" in "".join(chunks)

    wait_until(read_more, what="the whole log")
    log = standin.builds(JOB)[0].log
    assert "".join(chunks) == log
    assert len([c for c in chunks if c]) >= 2  # read in parts, as it grew
    assert "café-☕" in log
    assert offsets[-1] == len(log.encode()) > len(log)  # bytes, not characters

    end = offsets[-1]
    assert backend.read_log(build, end) == LogChunk("", end)
    assert backend.read_log(build, 3).text == log.encode()[3:].decode()
    # Past the end Jenkins takes the text as rolled over and sends it all again.
    assert backend.read_log(build, end + 100) == LogChunk(log, end)


def test_an_incomplete_character_at_the_end_is_kept_back():
    cup = "☕".encode()
    assert split_incomplete_utf8(b"ok " + cup) == (b"ok " + cup, b"")
    assert split_incomplete_utf8(b"ok " + cup[:2]) == (b"ok ", cup[:2])
    assert split_incomplete_utf8(b"") == (b"", b"")


# ----------------------------------------------------------------------------- errors


def test_jenkins_down_is_unavailable_on_start_and_on_status(standin, deploy):
    backend = JenkinsBackend(
        standin.url.replace("http://", f"http://{USER}:{TOKEN}@"), USER, TOKEN, timeout=5
    )
    standin.down()
    build = new_build(deploy)
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.start(build, spec_of(build))
    message = str(excinfo.value)
    masked = standin.url.replace("http://", "http://***@")
    assert message == f"Jenkins at {masked} did not answer: Connection refused"
    assert TOKEN not in message
    assert excinfo.value.retryable is True
    assert build.queue_id is None

    build.queue_id, build.build_number = 1, 1
    with pytest.raises(BackendUnavailable, match="did not answer"):
        backend.status(build)

    standin.up()  # back: the same backend object works again
    fresh = new_build(deploy, attempt=2)
    backend.start(fresh, spec_of(fresh))
    assert fresh.queue_id is not None


def test_a_silent_jenkins_times_out(deploy):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        backend = JenkinsBackend(url, USER, TOKEN, timeout=0.3)
        build = new_build(deploy)
        build.queue_id, build.build_number = 1, 1
        began = time.monotonic()
        with pytest.raises(BackendUnavailable) as excinfo:
            backend.status(build)
    assert str(excinfo.value) == f"Jenkins at {url} did not answer: no answer within 0.3 s"
    assert time.monotonic() - began < 3


def test_server_errors_are_unavailable_with_their_status(standin, backend, deploy):
    build = started(backend, deploy)
    run_to_end(backend, build)

    standin.set_status_override(500)
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.status(build)
    assert excinfo.value.status == 500
    assert str(excinfo.value).startswith("Jenkins answered 500")

    # python-jenkins turns a 503 into "job[...] number[1] does not exist": not a missing build.
    standin.set_status_override(503)
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.status(build)
    assert excinfo.value.status == 503
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.read_log(build, 0)
    assert excinfo.value.status == 503

    standin.set_status_override(500)
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.start(new_build(deploy, attempt=2), spec_of(build))
    assert excinfo.value.status == 500
    assert "\n" not in str(excinfo.value)

    standin.set_status_override(None)
    assert backend.status(build).passed is True


def test_a_wrong_token_is_refused_without_showing_it(standin, deploy):
    wrong = "wr0ng-t0ken-value"
    backend = JenkinsBackend(standin.url, USER, wrong, timeout=5)
    build = new_build(deploy)
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert excinfo.value.status == 401
    assert excinfo.value.retryable is False
    assert "JENKINS_TOKEN" in str(excinfo.value)
    assert wrong not in str(excinfo.value)
    assert standin.builds(JOB) == []


def test_a_user_without_permission_is_refused(standin, backend, deploy):
    standin.set_forbidden(True)
    build = new_build(deploy)
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert excinfo.value.status == 403
    assert f"the user '{USER}' lacks permission" in str(excinfo.value)


def test_missing_credentials_are_named(standin, deploy):
    backend = JenkinsBackend(standin.url, "", "", timeout=5)
    build = new_build(deploy)
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert excinfo.value.status == 403
    assert "anonymous" in str(excinfo.value)
    assert "JENKINS_USER" in str(excinfo.value)


def test_a_missing_job_is_refused(standin, backend, deploy):
    deploy.application.jenkins_job = "no-such-job"
    deploy.application.save()
    build = new_build(deploy)
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert excinfo.value.status == 404
    assert str(excinfo.value) == "Jenkins has no job called 'no-such-job'"


def test_a_job_without_parameters_is_refused(standin, backend, deploy):
    standin.define_parameters(JOB, None)  # buildWithParameters answers 500
    build = new_build(deploy)
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert "takes no parameters" in str(excinfo.value)

    standin.define_parameters(JOB, {})
    standin.set_status_override(400, f"/job/{JOB}/buildWithParameters")
    with pytest.raises(BackendRefused) as excinfo:
        backend.start(build, spec_of(build))
    assert excinfo.value.status == 400
    assert "parameterized" in str(excinfo.value)


def test_a_stale_crumb_is_passing_trouble_and_fetched_again(standin, backend, deploy):
    first = started(backend, deploy)
    assert first.queue_id is not None
    standin._sessions.clear()  # Jenkins restarted: the web session the crumb was bound to is gone

    second = new_build(deploy, attempt=2)
    with pytest.raises(BackendUnavailable) as excinfo:
        backend.start(second, spec_of(second))
    assert excinfo.value.status == 403
    backend.start(second, spec_of(second))  # a new client, a new crumb
    assert second.queue_id not in (None, first.queue_id)


# ------------------------------------------------------------------ forgotten queue items


def test_a_forgotten_queue_item_is_found_again_by_its_queue_id(standin, backend, deploy):
    standin.queue_item_ttl = 0  # forgotten as soon as it leaves the queue
    build = started(backend, deploy)
    other = JenkinsBackend(standin.url, USER, TOKEN, timeout=5)
    later = started(other, deploy, attempt=2)  # waits behind ours, then becomes #2
    wait_until(lambda: len(standin.builds(JOB)) == 2, what="both builds to start")

    report = run_to_end(backend, build)
    assert report.passed is True
    assert build.build_number == Build.objects.get(pk=build.pk).build_number == 1
    assert build.external_url == f"{standin.url}job/{JOB}/1/"
    assert requests_to(standin, "GET", f"/queue/item/{build.queue_id}/api/json") == [404]
    assert requests_to(standin, "GET", f"/job/{JOB}/api/json") == [200]
    assert later.queue_id != build.queue_id
    assert requests_to(standin, "GET", f"/job/{JOB}/2/api/json")  # searched newest first


def test_a_forgotten_item_without_a_build_is_refused(standin, backend, deploy):
    standin.queue_item_ttl = 0
    standin.queue_delay = 30
    build = started(backend, deploy)
    backend.abort(build)  # cancelled, then forgotten at once: no harm
    with pytest.raises(BackendRefused) as excinfo:
        backend.status(build)
    assert f"forgot queue item {build.queue_id}" in str(excinfo.value)
    assert standin.builds(JOB) == []


def test_an_item_still_in_the_queue_listing_is_waiting(standin, backend, deploy):
    standin.queue_delay = 30
    build = started(backend, deploy)
    standin.set_status_override(404, "/queue/item/")
    report = backend.status(build)
    assert report.finished is False
    assert report.summary.startswith("waiting in Jenkins' queue: In the quiet period")


# ----------------------------------------------------------------------------- settings


def test_from_settings_needs_jenkins_url(settings):
    settings.JENKINS_URL = ""
    with pytest.raises(BackendRefused, match="^JENKINS_URL is not set: "):
        backend_for("jenkins")

    settings.JENKINS_URL = "jenkins.example:8443"  # no scheme
    with pytest.raises(BackendRefused, match="^JENKINS_URL is not an http"):
        backend_for("jenkins")

    settings.JENKINS_URL = "https://jenkins.example:8443/ci"
    settings.JENKINS_USER = USER
    settings.JENKINS_TOKEN = TOKEN
    settings.JENKINS_TIMEOUT = 7
    backend = backend_for("jenkins")
    assert isinstance(backend, JenkinsBackend)
    assert (backend.url, backend.user, backend.timeout) == (
        "https://jenkins.example:8443/ci/",
        USER,
        7.0,
    )
    assert backend.client.timeout == 7.0
    assert backend.client is backend.client  # made once
    assert TOKEN not in repr(backend)


def test_a_jenkins_url_in_a_message_has_its_credentials_masked(settings):
    settings.JENKINS_URL = "ftp://ci:s3cret@jenkins.example/ci?token=t0ken#top"
    with pytest.raises(BackendRefused) as excinfo:
        backend_for("jenkins")
    assert str(excinfo.value).startswith(
        "JENKINS_URL is not an http(s) address: 'ftp://***@jenkins.example/ci' "
    )

    backend = JenkinsBackend("https://ci:s3cret@jenkins.example/", "ci", "s3cret", 1.0)
    assert repr(backend) == "<JenkinsBackend https://***@jenkins.example/ as ci>"
