"""The demo's simulated AWS: what runmoto makes, and the demo's builds publishing their image.

moto's server runs in this process (as runmoto runs it); the demo's build runs as the local
build runner runs it, with a plain environment and the system's python3.
"""

import json
import os
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import boto3
import pytest
from django.core.management.base import CommandError
from moto.server import ThreadedMotoServer

from clusters.targets.ecs import image_exists
from devtools.demo import BEHAVIOUR_ANNOTATION, LEGACY_FAILS, LEGACY_FAILS_BRANCH, OOM_BRANCH
from devtools.legacy_jobs import deploy_script
from devtools.management.commands import runembedded, runmoto

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or shutil.which("python3") is None,
    reason="the demo's build needs git and python3 on PATH",
)

REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-shop"


@pytest.fixture
def moto_url(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR"):
        monkeypatch.delenv(name, raising=False)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    reset = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - our own server
    server.stop()


@pytest.fixture
def demo_aws(moto_url):
    aws = runmoto.demo_aws()
    runmoto.create_demo_aws(moto_url, aws)
    return aws


def ecr(url: str):
    return boto3.client("ecr", region_name="us-east-1", endpoint_url=url, **runmoto.CREDENTIALS)


def checkout(remote: Path, branch: str, where: Path) -> Path:
    subprocess.run(
        ["git", "clone", "-q", "--branch", branch, str(remote), str(where)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return where


def run(checkout_dir: Path, argv: list[str], **extra: str) -> subprocess.CompletedProcess:
    """As the local build runner runs a build: a plain environment and the parameters."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.update(
        FC_DEPLOY_ID="7",
        FC_BUILD_ATTEMPT="1",
        FC_CANDIDATE_SHA="0123456789abcdef0123456789abcdef01234567",
        FC_BRANCH="feature/clean-merge",
        FC_IMAGE_TAG="0123456789ab",
        FC_IMAGE_REPOSITORY=REPOSITORY,
    )
    env.update(extra)
    return subprocess.run(
        argv, cwd=checkout_dir, env=env, capture_output=True, text=True, timeout=60
    )


def manifest_of(url: str, tag: str) -> dict:
    images = ecr(url).batch_get_image(repositoryName="demo-shop", imageIds=[{"imageTag": tag}])
    (image,) = images["images"]
    return json.loads(image["imageManifest"])


def test_runmoto_makes_the_demo_services_once(moto_url):
    aws = runmoto.demo_aws()
    assert not runmoto.demo_aws_ready(moto_url, aws)

    made = runmoto.create_demo_aws(moto_url, aws)

    assert made[:3] == [
        "ECR repository demo-shop",
        f"image {REPOSITORY}:base",
        "ECS cluster demo (us-east-1)",
    ]
    assert runmoto.demo_aws_ready(moto_url, aws)
    ecs = boto3.client("ecs", region_name="us-east-1", endpoint_url=moto_url, **runmoto.CREDENTIALS)
    names = [s.name for s in aws.services]
    described = ecs.describe_services(cluster="demo", services=names)["services"]
    assert sorted(s["serviceName"] for s in described) == sorted(
        [
            "demo-shop-mailer",
            "demo-shop-worker",
            "demo-shop-poller",
            "demo-shop-static",
            "demo-shop-web",
        ]
    )
    for service in described:
        assert service["desiredCount"] == 2
        definition = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])
        definition = definition["taskDefinition"]
        assert definition["networkMode"] == "bridge"
        assert [(c["name"], c["image"]) for c in definition["containerDefinitions"]] == [
            ("app", f"{REPOSITORY}:base")
        ]
    assert runmoto.create_demo_aws(moto_url, aws) == []  # idempotent


def test_a_passing_demo_build_publishes_its_image_where_the_rollout_looks(
    demo_aws, moto_url, demo_remote, tmp_path, monkeypatch
):
    work = checkout(demo_remote, "main", tmp_path / "main")

    build = run(work, ["sh", "build.sh"], AWS_ENDPOINT_URL=moto_url, AWS_DEFAULT_REGION="us-east-1")

    assert build.returncode == 0, build.stdout + build.stderr
    lines = build.stdout.splitlines()
    assert lines.index("== all checks passed") < lines.index("-- publish")
    assert f"publish: pushed {REPOSITORY}:0123456789ab (sha256:" in build.stdout
    manifest = manifest_of(moto_url, "0123456789ab")
    assert manifest["annotations"] == {"org.opencontainers.image.title": "demo-shop"}
    # The rollout's own check finds it, through AWS_ENDPOINT_URL as the worker has it.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "demo")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "demo")
    assert image_exists(f"{REPOSITORY}:0123456789ab")
    assert not image_exists(f"{REPOSITORY}:not-built")

    # A retry of the same candidate pushes the same image again: that is fine.
    again = run(work, ["python3", "publish_image.py"], AWS_ENDPOINT_URL=moto_url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "is already there, the same image" in again.stdout


def test_the_oom_branch_publishes_an_image_annotated_to_run_out_of_memory(
    demo_aws, moto_url, demo_remote, tmp_path
):
    work = checkout(demo_remote, OOM_BRANCH, tmp_path / "oom")
    published = run(
        work, ["python3", "publish_image.py"], AWS_ENDPOINT_URL=moto_url, FC_IMAGE_TAG="oomtag"
    )
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"{BEHAVIOUR_ANNOTATION}=oom" in published.stdout
    assert manifest_of(moto_url, "oomtag")["annotations"][BEHAVIOUR_ANNOTATION] == "oom"


def test_the_legacy_fails_branch_publishes_an_image_its_legacy_job_fails_on(
    demo_aws, moto_url, demo_remote, tmp_path, monkeypatch
):
    work = checkout(demo_remote, LEGACY_FAILS_BRANCH, tmp_path / "legacy-fails")
    published = run(
        work, ["python3", "publish_image.py"], AWS_ENDPOINT_URL=moto_url, FC_IMAGE_TAG="legacyfails"
    )
    assert published.returncode == 0, published.stdout + published.stderr
    assert f"{BEHAVIOUR_ANNOTATION}={LEGACY_FAILS}" in published.stdout
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "demo")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "demo")
    parameters = {"SERVICE": "worker", "IMAGE": f"{REPOSITORY}:legacyfails"}
    job = "legacy-deploy-worker"
    fails = deploy_script(job, {**parameters, "VERSION": "legacyfails"}, endpoint=moto_url)
    assert fails.outcome == "fail" and "health check failed" in "\n".join(fails.lines)
    # The image of main, published the same way, goes out on the legacy side.
    main = run(
        checkout(demo_remote, "main", tmp_path / "main"),
        ["python3", "publish_image.py"],
        AWS_ENDPOINT_URL=moto_url,
        FC_IMAGE_TAG="maintag",
    )
    assert main.returncode == 0, main.stdout + main.stderr
    image = {"SERVICE": "worker", "IMAGE": f"{REPOSITORY}:maintag", "VERSION": "maintag"}
    assert deploy_script(job, image, endpoint=moto_url).outcome == "succeed"


def test_publishing_says_why_it_did_not_publish(demo_aws, moto_url, demo_remote, tmp_path):
    work = checkout(demo_remote, "main", tmp_path / "main")

    skipped = run(work, ["sh", "build.sh"])  # no AWS_ENDPOINT_URL: tests, a bare machine
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "publish: AWS_ENDPOINT_URL is not set, so there is no registry: skipped" in (
        skipped.stdout
    )

    not_ecr = run(
        work,
        ["python3", "publish_image.py"],
        AWS_ENDPOINT_URL=moto_url,
        FC_IMAGE_REPOSITORY="registry.example.com/shop",
    )
    assert not_ecr.returncode == 1
    assert "is not an ECR repository" in not_ecr.stdout

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{closed.getsockname()[1]}"
    unreachable = run(work, ["python3", "publish_image.py"], AWS_ENDPOINT_URL=nobody)
    assert unreachable.returncode == 1
    assert f"publish: could not reach ECR at {nobody}" in unreachable.stdout


def test_moto_port_and_a_port_in_use(monkeypatch):
    monkeypatch.delenv("FC_MOTO_PORT", raising=False)
    assert runmoto.moto_port() == runmoto.DEFAULT_PORT
    monkeypatch.setenv("FC_MOTO_PORT", "18001")
    assert runmoto.moto_port() == 18001
    for bad in ("eighty", "0", "70000"):
        monkeypatch.setenv("FC_MOTO_PORT", bad)
        with pytest.raises(CommandError, match="FC_MOTO_PORT"):
            runmoto.moto_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(CommandError, match="in use: set FC_MOTO_PORT"):
            runmoto.check_free(taken.getsockname()[1])


def test_runembedded_stops_waiting_when_the_simulated_aws_dies():
    class Dead:
        returncode = 1

        def poll(self):
            return 1

    class Supervising:
        """The supervisor as _wait_for_moto sees it: moto started, and died."""

        stop_requested = False

        def process(self, name):
            assert name == "moto"
            return Dead()

    with pytest.raises(CommandError, match="stopped with exit code 1"):
        runembedded.Command()._wait_for_moto(
            Supervising(), "http://127.0.0.1:1", None, lambda *a: False
        )
