"""The Jenkins stand-in, driven by the real python-jenkins 1.8 client (no mocks).

These tests also pin down what python-jenkins raises for each Jenkins answer, which is what the
production backend has to handle: see the module docstring of tests/jenkins_standin.py.
"""

import threading
import time

import jenkins
import pytest
import requests

from tests.jenkins_standin import JENKINS_VERSION, JenkinsStandin, Script
from tests.waiting import wait_until

USER, TOKEN, JOB = "fatcontroller", "s3cret-token", "demo-shop"


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a python-jenkins exception, from the implicit __context__ chain."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None:
            return response.status_code
        seen = seen.__cause__ or seen.__context__
    return None


@pytest.fixture
def standin():
    with JenkinsStandin() as server:
        server.queue_delay = 0.05
        server.build_seconds = 0.2
        yield server
    assert server.server_errors == []  # a bug in the stand-in itself, not in what it answers
    assert server.callback_errors == []


@pytest.fixture
def server(standin) -> jenkins.Jenkins:
    return jenkins.Jenkins(standin.url, USER, TOKEN, timeout=5)


def started(server: jenkins.Jenkins, queue_id: int) -> dict:
    """The queue item once it has left the queue for an executor."""

    def executable():
        item = server.get_queue_item(queue_id)
        return item if item.get("executable") else None

    return wait_until(executable, what=f"queue item {queue_id} to start")


def finished(server: jenkins.Jenkins, number: int, job: str = JOB) -> dict:
    def done():
        info = server.get_build_info(job, number)
        return info if not info["building"] else None

    return wait_until(done, what=f"{job} #{number} to finish")


def run(server: jenkins.Jenkins, parameters: dict | None = None) -> dict:
    queue_id = server.build_job(JOB, parameters or {"BRANCH": "main"})
    return finished(server, started(server, queue_id)["executable"]["number"])


def test_version_is_public_but_a_fresh_client_sends_no_credentials(standin):
    assert jenkins.Jenkins(standin.url).get_version() == JENKINS_VERSION

    server = jenkins.Jenkins(standin.url, USER, TOKEN, timeout=5)
    assert server.get_version() == JENKINS_VERSION
    assert standin.request_log[-1].user is None  # auth is attached lazily, not yet here
    server.get_whoami()
    server.get_version()
    assert standin.request_log[-1].user == USER

    # A Jenkins where anonymous cannot read "/" answers 403 (with X-Jenkins still set).
    standin.anonymous_read_root = False
    fresh = jenkins.Jenkins(standin.url, USER, TOKEN, timeout=5)
    with pytest.raises(jenkins.BadHTTPException) as excinfo:
        fresh.get_version()
    assert http_status(excinfo.value) == 403
    assert excinfo.value.__context__.response.headers["X-Jenkins"] == JENKINS_VERSION


def test_whoami(server):
    me = server.get_whoami()
    assert me["id"] == USER
    assert me["fullName"] == USER
    assert me["_class"] == "hudson.model.User"


def test_build_with_parameters_goes_through_the_queue(standin, server):
    standin.queue_delay = 0.3
    queue_id = server.build_job(JOB, {"BRANCH": "feature/x", "SHA": "abc123"})
    assert isinstance(queue_id, int)
    created = [r for r in standin.request_log if r.path.endswith("/buildWithParameters")]
    assert created[-1].query == "BRANCH=feature%2Fx&SHA=abc123"  # query string, not a form

    waiting = server.get_queue_item(queue_id)
    assert waiting["_class"] == "hudson.model.Queue$WaitingItem"
    assert waiting["why"].startswith("In the quiet period. Expires in ")
    assert waiting["params"] == "\nBRANCH=feature/x\nSHA=abc123"
    assert waiting["task"]["name"] == JOB
    assert "executable" not in waiting

    left = started(server, queue_id)
    assert left["_class"] == "hudson.model.Queue$LeftItem"
    assert left["cancelled"] is False
    assert left["executable"] == {
        "_class": "hudson.model.FreeStyleBuild",
        "number": 1,
        "url": f"{standin.url}job/{JOB}/1/",
    }

    running = server.get_build_info(JOB, 1)
    assert running["building"] is True
    assert running["result"] is None
    assert running["duration"] == 0
    assert running["estimatedDuration"] == -1  # no completed build yet
    assert running["queueId"] == queue_id
    assert running["displayName"] == "#1"
    assert {"_class": "hudson.model.ParametersAction", "parameters": [
        {"_class": "hudson.model.StringParameterValue", "name": "BRANCH", "value": "feature/x"},
        {"_class": "hudson.model.StringParameterValue", "name": "SHA", "value": "abc123"},
    ]} in running["actions"]  # fmt: skip

    done = finished(server, 1)
    assert done["result"] == "SUCCESS"
    assert done["duration"] > 0
    console = server.get_build_console_output(JOB, 1)
    assert console.startswith("Started by user fatcontroller\n")
    assert "+ ./deploy.sh BRANCH=feature/x SHA=abc123\n" in console
    assert console.endswith("Finished: SUCCESS\n")

    job = server.get_job_info(JOB)
    assert job["nextBuildNumber"] == 2
    assert job["lastBuild"]["number"] == 1
    assert job["lastSuccessfulBuild"]["number"] == 1
    assert job["inQueue"] is False
    assert job["color"] == "blue"

    [record] = standin.builds(JOB)
    assert (record.number, record.queue_id, record.result) == (1, queue_id, "SUCCESS")
    assert record.parameters == {"BRANCH": "feature/x", "SHA": "abc123"}
    assert record.log == console


def test_flake_plan_fails_then_succeeds(standin, server):
    standin.plan(JOB, "flake")
    first, second, third = run(server), run(server), run(server)
    assert [first["result"], second["result"], third["result"]] == ["FAILURE", "SUCCESS", "SUCCESS"]
    failed_log = server.get_build_console_output(JOB, first["number"])
    assert "Build step 'Execute shell' marked build as failure\nFinished: FAILURE\n" in failed_log
    assert third["estimatedDuration"] > 0
    assert server.get_job_info(JOB)["lastFailedBuild"]["number"] == 1


def test_hung_build_is_stopped_and_aborted(standin, server):
    standin.plan(JOB, "hang")
    number = started(server, server.build_job(JOB, {"BRANCH": "main"}))["executable"]["number"]
    wait_until(
        lambda: "Waiting for the deployment lock" in server.get_build_console_output(JOB, number),
        what="the hung build to log",
    )
    assert server.get_build_info(JOB, number)["building"] is True

    server.stop_build(JOB, number)  # POST .../stop, 302, and requests follows it with a GET
    stop_at = standin.requests.index(("POST", f"/job/{JOB}/{number}/stop"))
    assert standin.requests[stop_at + 1] == ("GET", f"/job/{JOB}/{number}/")
    assert standin.request_log[stop_at].status == 302

    done = finished(server, number)
    assert done["result"] == "ABORTED"
    console = server.get_build_console_output(JOB, number)
    assert console.endswith("Build was aborted\nAborted by fatcontroller\nFinished: ABORTED\n")


def test_wrong_token_is_401_inside_a_plain_jenkins_exception(standin):
    server = jenkins.Jenkins(standin.url, USER, "not-the-token", timeout=5)
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.get_whoami()
    exc = excinfo.value
    assert type(exc) is jenkins.JenkinsException
    assert str(exc).startswith("Error in request. Possibly authentication failed [401]: ")
    assert "Invalid password/token for user: fatcontroller" in str(exc)
    # Not chained with "from": the status is on the implicit context, a requests.HTTPError.
    assert exc.__cause__ is None
    assert isinstance(exc.__context__, requests.HTTPError)
    assert exc.__context__.response.status_code == 401
    assert exc.__context__.response.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'

    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.build_job(JOB, {"BRANCH": "main"})  # fails on the crumb request, also a 401
    assert http_status(excinfo.value) == 401


def test_missing_credentials_get_403_as_jenkins_answers_anonymous(standin):
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        jenkins.Jenkins(standin.url).get_whoami()
    assert "[403]" in str(excinfo.value)
    assert "Authentication required" in str(excinfo.value)

    response = requests.get(f"{standin.url}me/api/json", timeout=5)
    assert response.status_code == 403
    assert response.headers["X-You-Are-Authenticated-As"] == "anonymous"
    assert "WWW-Authenticate" not in response.headers


def test_forbidden_user_gets_403_everywhere_but_whoami(standin, server):
    standin.set_forbidden(True)
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.get_job_info(JOB)
    assert type(excinfo.value) is jenkins.JenkinsException  # not "job[...] does not exist"
    assert "[403]" in str(excinfo.value)
    assert "fatcontroller is missing the Overall/Read permission" in str(excinfo.value)
    whoami = requests.get(f"{standin.url}whoAmI/api/json", auth=(USER, TOKEN), timeout=5)
    assert whoami.status_code == 200
    assert whoami.json()["name"] == USER

    standin.set_forbidden(False)
    assert server.get_job_info(JOB)["name"] == JOB


def test_status_override_500_and_503(standin, server):
    number = run(server)["number"]

    standin.set_status_override(500)
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.get_build_info(JOB, number)
    assert "Possibly authentication failed [500]" in str(excinfo.value)
    assert http_status(excinfo.value) == 500
    assert server.get_version() == JENKINS_VERSION  # "" spares "/"

    standin.set_status_override(503)
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.get_build_info(JOB, number)
    assert str(excinfo.value) == f"job[{JOB}] number[{number}] does not exist"  # a lie
    assert http_status(excinfo.value) == 503
    with pytest.raises(requests.HTTPError) as raw:
        server.build_job(JOB, {"BRANCH": "main"})
    assert not isinstance(raw.value, jenkins.JenkinsException)
    assert raw.value.response.status_code == 503
    with pytest.raises(jenkins.BadHTTPException):
        server.get_whoami()

    standin.set_status_override(503, "/")
    with pytest.raises(jenkins.BadHTTPException):
        server.get_version()

    standin.set_status_override(None)
    assert server.get_build_info(JOB, number)["result"] == "SUCCESS"


def test_post_needs_a_crumb_from_the_same_session(standin):
    trigger = f"{standin.url}job/{JOB}/buildWithParameters?BRANCH=main"
    refused = requests.post(trigger, auth=(USER, TOKEN), timeout=5)
    assert refused.status_code == 403
    assert "No valid crumb was included in the request" in refused.text

    crumb = requests.get(f"{standin.url}crumbIssuer/api/json", auth=(USER, TOKEN), timeout=5)
    assert crumb.json()["_class"] == "hudson.security.csrf.DefaultCrumbIssuer"
    assert crumb.json()["crumbRequestField"] == "Jenkins-Crumb"
    header = {"Jenkins-Crumb": crumb.json()["crumb"]}
    no_cookie = requests.post(trigger, auth=(USER, TOKEN), headers=header, timeout=5)
    assert no_cookie.status_code == 403  # the crumb is bound to the web session's cookie

    with requests.Session() as session:
        session.auth = (USER, TOKEN)
        crumb = session.get(f"{standin.url}crumbIssuer/api/json", timeout=5).json()
        accepted = session.post(
            trigger,
            headers={crumb["crumbRequestField"]: crumb["crumb"]},
            allow_redirects=False,
            timeout=5,
        )
    assert accepted.status_code == 201
    assert accepted.headers["Location"] == f"{standin.url}queue/item/1/"

    standin.csrf_exempt_api_token = True  # Jenkins >= 2.96 with an API token
    assert requests.post(trigger + "x", auth=(USER, TOKEN), timeout=5).status_code == 201


def test_progressive_text_through_python_jenkins_own_session(standin, server):
    standin.build_seconds = 0.5
    assert server._session.auth is None  # nothing attached until python-jenkins' first request
    number = started(server, server.build_job(JOB, {"BRANCH": "main"}))["executable"]["number"]
    url = f"{standin.url}job/{JOB}/{number}/logText/progressiveText"

    chunks, more_data_seen, start = [], 0, 0

    def read_more() -> bool:
        nonlocal start, more_data_seen
        # jenkins_request: python-jenkins' session, auth, crumb, timeout and error mapping,
        # and the whole requests.Response (jenkins_open would return only .text).
        response = server.jenkins_request(requests.Request("GET", url, params={"start": start}))
        assert response.headers["Content-Type"].startswith("text/plain")
        chunks.append(response.text)
        start = int(response.headers["X-Text-Size"])
        if response.headers.get("X-More-Data") == "true":
            more_data_seen += 1
            return False
        return True

    wait_until(read_more, what="the log to be complete")
    assert more_data_seen >= 2
    assert server._session.auth is not None
    log = "".join(chunks)
    assert log == server.get_build_console_output(JOB, number)
    assert start == len(log.encode())

    # A start past the end is taken as "text rolled over": the whole log again.
    response = server.jenkins_request(requests.Request("GET", url, params={"start": start + 10}))
    assert response.text == log
    assert "X-More-Data" not in response.headers


def test_queue_item_is_forgotten_after_its_ttl(standin, server):
    standin.queue_item_ttl = 0.3
    queue_id = server.build_job(JOB, {"BRANCH": "main"})
    number = started(server, queue_id)["executable"]["number"]

    def forgotten():
        try:
            server.get_queue_item(queue_id)
        except jenkins.JenkinsException as exc:
            return exc
        return None

    exc = wait_until(forgotten, what="the queue item to be forgotten")
    assert type(exc) is jenkins.JenkinsException  # the NotFoundException is re-wrapped
    assert str(exc) == f"queue number[{queue_id}] does not exist"
    assert http_status(exc) == 404
    assert server.get_build_info(JOB, number)["queueId"] == queue_id  # the way back


def test_down_refuses_connections_fast_and_up_comes_back(standin, server):
    server.get_whoami()
    standin.down()
    began = time.monotonic()
    with pytest.raises(requests.ConnectionError) as excinfo:
        server.get_build_info(JOB, 1)
    assert not isinstance(excinfo.value, jenkins.JenkinsException)
    with pytest.raises(requests.ConnectionError):
        server.get_version()
    assert time.monotonic() - began < 1

    standin.up()
    assert server.get_whoami()["id"] == USER


def test_callback_runs_in_the_post_build_phase(standin, server):
    observer = jenkins.Jenkins(standin.url, USER, TOKEN, timeout=5)
    seen = []

    @standin.on_build_finished
    def notify(job, number, result):
        info = observer.get_build_info(job, number)
        console = observer.get_build_console_output(job, number)
        seen.append((job, number, result, info["result"], info["building"], "Finished" in console))

    assert run(server)["result"] == "SUCCESS"
    # Like a notification step: result already set, but still building and no "Finished:".
    assert seen == [(JOB, 1, "SUCCESS", "SUCCESS", True, False)]
    assert standin.callback_errors == []


def test_parameters_as_jenkins_takes_them(standin, server):
    with pytest.raises(requests.HTTPError) as excinfo:
        server.build_job(JOB)  # no parameters: python-jenkins posts /build instead
    assert excinfo.value.response.status_code == 400
    assert "Nothing is submitted" in excinfo.value.response.text

    standin.define_parameters(JOB, {"BRANCH": "main", "TARGET": "staging"})
    run(server, {"BRANCH": "release", "UNDEFINED": "dropped"})
    assert standin.builds(JOB)[-1].parameters == {"BRANCH": "release", "TARGET": "staging"}

    standin.define_parameters(JOB, None)
    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.build_job(JOB, {"BRANCH": "main"})
    assert "[500]" in str(excinfo.value)
    assert "This build is not parameterized!" in str(excinfo.value)
    finished(server, started(server, server.build_job(JOB))["executable"]["number"])


def test_queue_merges_duplicates_blocks_and_cancels(standin, server):
    standin.queue_delay = 0.3
    first = server.build_job(JOB, {"BRANCH": "a"})
    assert server.build_job(JOB, {"BRANCH": "a"}) == first  # merged into the waiting item
    second = server.build_job(JOB, {"BRANCH": "b"})
    third = server.build_job(JOB, {"BRANCH": "c"})
    assert len({first, second, third}) == 3

    server.cancel_queue(third)
    cancelled = server.get_queue_item(third)
    assert cancelled["_class"] == "hudson.model.Queue$LeftItem"
    assert cancelled["cancelled"] is True
    assert cancelled["executable"] is None

    number = started(server, first)["executable"]["number"]
    blocked = wait_until(
        lambda: (item := server.get_queue_item(second))["blocked"] and item,
        what="the second build to be blocked by the first",
    )
    assert blocked["_class"] == "hudson.model.Queue$BlockedItem"
    assert blocked["why"].startswith(f"Build #{number} is already in progress")

    with pytest.raises(jenkins.JenkinsException) as excinfo:
        server.cancel_queue(first)  # already left the queue, not yet forgotten
    assert http_status(excinfo.value) == 500
    finished(server, started(server, second)["executable"]["number"])
    assert [b.parameters["BRANCH"] for b in standin.builds(JOB)] == ["a", "b"]


def test_a_scripted_job_decides_each_build_from_its_parameters(standin, server):
    asked = []
    release = threading.Event()

    def script(parameters):
        asked.append(parameters)
        if parameters["VERSION"] == "slow":
            release.wait(5)  # the stand-in keeps answering meanwhile: outside its lock
        if parameters["VERSION"] == "bad":
            return Script("fail", ("ERROR: bad release", "+ exit 1"), seconds=0.1)
        if parameters["VERSION"] == "boom":
            raise RuntimeError("the script itself broke")
        return "succeed"

    standin.plan(JOB, "fail")  # a script wins over the plan
    standin.script(JOB, script)

    good = run(server, {"VERSION": "1.2.3"})
    assert good["result"] == "SUCCESS"
    bad = run(server, {"VERSION": "bad"})
    assert bad["result"] == "FAILURE"
    console = server.get_build_console_output(JOB, bad["number"])
    assert console.index("ERROR: bad release\n+ exit 1\n") < console.index(
        "Build step 'Execute shell' marked build as failure\nFinished: FAILURE\n"
    )

    queue_id = server.build_job(JOB, {"VERSION": "slow"})
    number = started(server, queue_id)["executable"]["number"]
    assert server.get_build_info(JOB, number)["building"] is True  # while the script decides
    release.set()
    assert finished(server, number)["result"] == "SUCCESS"
    assert [p["VERSION"] for p in asked] == ["1.2.3", "bad", "slow"]

    broke = run(server, {"VERSION": "boom"})
    assert broke["result"] == "FAILURE"
    assert "ERROR: RuntimeError: the script itself broke" in server.get_build_console_output(
        JOB, broke["number"]
    )
    assert [str(e) for e in standin.callback_errors] == ["the script itself broke"]
    standin.callback_errors.clear()  # seen: the fixture checks for unexpected ones

    standin.script(JOB, None)
    assert run(server, {"VERSION": "1.2.4"})["result"] == "FAILURE"  # back to the plan


def test_a_build_stopped_while_its_script_decides_is_aborted(standin, server):
    release = threading.Event()
    standin.script(JOB, lambda parameters: release.wait(5) and "succeed")
    number = started(server, server.build_job(JOB, {"VERSION": "1"}))["executable"]["number"]
    server.stop_build(JOB, number)
    assert finished(server, number)["result"] == "ABORTED"
    release.set()
    wait_until(lambda: not standin.builds(JOB)[0].deciding, what="the script to answer")
    (build,) = standin.builds(JOB)
    assert (build.result, build.building) == ("ABORTED", False)
    assert build.log.endswith("Aborted by fatcontroller\nFinished: ABORTED\n")
