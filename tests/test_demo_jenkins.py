"""The demo's legacy side: `manage.py runjenkins` and the legacy deploy jobs it serves.

runjenkins runs as a process of its own, as `make run` runs it, and is driven with the real
python-jenkins client. The images its jobs deploy are manifests in moto's ECR (a moto server
in this process, which runjenkins reaches at AWS_ENDPOINT_URL), pushed as the demo's builds
push them.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import boto3
import jenkins
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from moto.server import ThreadedMotoServer

from devtools.demo import BEHAVIOUR_ANNOTATION, LEGACY_FAILS
from devtools.legacy_jobs import PARAMETERS, deploy_script
from devtools.management.commands import runembedded, runjenkins, runmoto
from lib.process_groups import start_in_own_group, stop_group
from tests.ports import closed_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-shop"
JOB = "legacy-deploy-worker"
USER = "fatcontroller"
START_TIMEOUT = 60.0  # Django starting in a child on a busy machine
BUILD_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    ecr(url).create_repository(repositoryName="demo-shop")
    yield url
    reset = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - our own server
    server.stop()


def ecr(url: str):
    return boto3.client("ecr", region_name="us-east-1", endpoint_url=url, **runmoto.CREDENTIALS)


def push_image(url: str, tag: str, behaviour: str | None = None) -> str:
    """An image as the demo's build publishes it: a manifest with annotations, by PutImage."""
    annotations = {"org.opencontainers.image.title": "demo-shop"}
    if behaviour:
        annotations[BEHAVIOUR_ANNOTATION] = behaviour
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + secrets.token_hex(32),
            "size": 1024,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + secrets.token_hex(32),
                "size": 1024,
            }
        ],
        "annotations": annotations,
    }
    ecr(url).put_image(repositoryName="demo-shop", imageTag=tag, imageManifest=json.dumps(manifest))
    return f"{REPOSITORY}:{tag}"


@pytest.fixture(scope="module")
def legacy_jenkins(moto_url, tmp_path_factory):
    """`manage.py runjenkins` serving the worker's legacy job, as runembedded starts it."""
    token = secrets.token_urlsafe(24)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FC_LEGACY_"))}
    env.update(
        AWS_ENDPOINT_URL=moto_url,
        AWS_ACCESS_KEY_ID="demo",
        AWS_SECRET_ACCESS_KEY="demo",
        FC_LEGACY_JENKINS_TOKEN=token,
        PYTHONUNBUFFERED="1",
    )
    log_path = tmp_path_factory.mktemp("runjenkins") / "runjenkins.log"
    argv = [sys.executable, "manage.py", "runjenkins", "--port", str(port), "--job", JOB]
    with log_path.open("wb") as log:
        process = start_in_own_group(
            [*argv, "--build-seconds", "0.5"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = runjenkins.url_for(port)
    try:
        wait_until(
            lambda: runjenkins.jenkins_ready(url, USER, token, [JOB]),
            START_TIMEOUT,
            lambda: f"runjenkins to answer at {url}:\n{log_path.read_text()}",
            interval=0.2,
        )
        yield url, token, process, log_path
    finally:
        stop_group(process, grace=10)


def finished_build(server: jenkins.Jenkins, queue_id: int) -> dict:
    def executable():
        return server.get_queue_item(queue_id).get("executable")

    number = wait_until(executable, BUILD_TIMEOUT, f"queue item {queue_id} to start")["number"]

    def done():
        info = server.get_build_info(JOB, number)
        return info if not info["building"] else None

    return wait_until(done, BUILD_TIMEOUT, f"{JOB} #{number} to finish")


def trigger(server: jenkins.Jenkins, image: str, version: str, **extra: str) -> dict:
    parameters = {
        "SERVICE": "worker",
        "COMMIT": "0123456789abcdef0123456789abcdef01234567",
        "IMAGE": image,
        "VERSION": version,
        "FC_REQUEST": secrets.token_hex(8),
        **extra,
    }
    return finished_build(server, server.build_job(JOB, parameters))


def test_runjenkins_serves_the_legacy_job_through_python_jenkins(legacy_jenkins, moto_url):
    url, token, process, log_path = legacy_jenkins
    server = jenkins.Jenkins(url, USER, token, timeout=5)
    assert server.get_whoami()["id"] == USER
    job = server.get_job_info(JOB)
    (definitions,) = [p for p in job["property"] if "parameterDefinitions" in p]
    assert [d["name"] for d in definitions["parameterDefinitions"]] == list(PARAMETERS)

    image = push_image(moto_url, "0123456789ab")
    build = trigger(server, image, "0123456789ab", NOT_A_PARAMETER="dropped")

    assert build["result"] == "SUCCESS"
    (sent,) = [a["parameters"] for a in build["actions"] if "parameters" in a]
    assert [p["name"] for p in sent] == list(PARAMETERS)  # as Jenkins, undefined ones dropped
    console = server.get_build_console_output(JOB, build["number"])
    assert console.startswith("Started by user Fat Controller\n")
    for line in (
        "+ ./deploy.sh --service worker --version 0123456789ab",
        "Deploying demo-shop-worker 0123456789ab (commit 0123456789ab) to 2 hosts: "
        "legacy-worker-01, legacy-worker-02",
        f"Pulling {image}",
        "[legacy-worker-02] health check passed",
        "demo-shop-worker 0123456789ab is live on 2 hosts",
    ):
        assert line + "\n" in console, console
    assert console.endswith("Finished: SUCCESS\n")

    with pytest.raises(jenkins.JenkinsException, match=r"\[401\]"):
        jenkins.Jenkins(url, USER, "not-the-token", timeout=5).get_whoami()
    assert process.poll() is None
    assert token not in log_path.read_text()  # the credentials are never printed


def test_a_legacy_fails_image_fails_the_job_and_a_release_not_in_ecr_goes_out(
    legacy_jenkins, moto_url
):
    url, token, _process, _log = legacy_jenkins
    server = jenkins.Jenkins(url, USER, token, timeout=5)

    image = push_image(moto_url, "fedcba987654", behaviour=LEGACY_FAILS)
    failed = trigger(server, image, "fedcba987654")

    assert failed["result"] == "FAILURE"
    console = server.get_build_console_output(JOB, failed["number"])
    assert (
        "[legacy-worker-01] health check failed: demo-shop-worker stopped with status 1" in console
    )
    assert "[legacy-worker-02]" not in console  # it stopped at the first host
    assert console.endswith(
        "+ exit 1\nBuild step 'Execute shell' marked build as failure\nFinished: FAILURE\n"
    )

    # An image the simulated ECS runs out of memory on is not the legacy side's business.
    assert (
        trigger(server, push_image(moto_url, "00000000000a", "oom"), "00000000000a")["result"]
        == "SUCCESS"
    )
    # A restore to the release the job ran before Fat Controller: never pushed to ECR.
    restored = trigger(server, f"{REPOSITORY}:1.0.0", "1.0.0")
    assert restored["result"] == "SUCCESS"
    assert "Fetching release 1.0.0 from the release store: done\n" in (
        server.get_build_console_output(JOB, restored["number"])
    )


def test_a_deploy_job_that_cannot_ask_ecr_fails_saying_why(monkeypatch):
    image = f"{REPOSITORY}:0123456789ab"
    unreachable = f"http://127.0.0.1:{closed_port()}"
    parameters = {"VERSION": "0123456789ab", "IMAGE": image}
    for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    no_credentials = deploy_script(JOB, parameters, endpoint=unreachable)
    assert (no_credentials.outcome, no_credentials.lines[-2]) == (
        "fail",
        f"ERROR: cannot pull {image}: Unable to locate credentials",
    )

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "demo")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "demo")
    script = deploy_script(JOB, parameters, endpoint=unreachable)
    assert script.outcome == "fail"
    assert script.lines[-2].startswith(f"ERROR: cannot pull {image}: Could not connect")
    assert script.lines[-1] == "+ exit 1"
    no_version = deploy_script(JOB, {"IMAGE": image}, endpoint=unreachable)
    assert (no_version.outcome, no_version.lines[-2]) == (
        "fail",
        "ERROR: no VERSION given: nothing to deploy",
    )


def test_runjenkins_needs_a_token_and_a_free_port(monkeypatch):
    monkeypatch.delenv("FC_LEGACY_JENKINS_TOKEN", raising=False)
    with pytest.raises(CommandError, match="set FC_LEGACY_JENKINS_TOKEN"):
        call_command("runjenkins", "--job", JOB)
    monkeypatch.setenv("FC_LEGACY_JENKINS_TOKEN", "t")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match="in use: set FC_JENKINS_PORT"):
            call_command("runjenkins", "--job", JOB, "--port", str(port))
    monkeypatch.setenv("FC_JENKINS_PORT", "eighty")
    with pytest.raises(CommandError, match="FC_JENKINS_PORT must be a port number"):
        runjenkins.jenkins_port()


def test_the_demo_timings_are_taken_from_the_environment_or_refused(monkeypatch):
    monkeypatch.delenv("FC_LEGACY_JOB_SECONDS", raising=False)
    assert runjenkins.job_seconds() == runjenkins.BUILD_SECONDS == 4.0
    monkeypatch.setenv("FC_LEGACY_JOB_SECONDS", " 1.5 ")
    assert runjenkins.job_seconds() == 1.5
    for wrong in ("soon", "-1", "nan", "4000"):
        monkeypatch.setenv("FC_LEGACY_JOB_SECONDS", wrong)
        with pytest.raises(CommandError, match="FC_LEGACY_JOB_SECONDS must be seconds"):
            runjenkins.job_seconds()
    monkeypatch.setenv("FC_DEMO_LEAK_SECONDS", "0")
    with pytest.raises(CommandError, match=r"FC_DEMO_LEAK_SECONDS must be seconds \(1 to 3600\)"):
        runmoto.seconds_setting(runmoto.LEAK_SETTING, runmoto.LEAK_AFTER_SECONDS, least=1.0)


def test_runembedded_stops_waiting_when_the_stand_in_jenkins_dies():
    class Dead:
        returncode = 2

        def poll(self):
            return 2

    class Supervising:
        stop_requested = False

        def process(self, name):
            assert name == "jenkins"
            return Dead()

    env = {}
    runembedded.legacy_jenkins(env)
    with pytest.raises(CommandError, match=r"the stand-in Jenkins \(runjenkins\) stopped"):
        runembedded.Command()._wait_for_jenkins(Supervising(), env)


def test_runjenkins_serves_one_job_per_legacy_placement_of_the_demo():
    assert runjenkins.demo_legacy_jobs() == [
        f"legacy-deploy-{service}" for service in ("mailer", "worker", "poller", "static", "web")
    ]
