"""What the benches that run a rollout share: moto's server with the ECS simulator, a real
worker pointed at it, and waiting with a deadline.

`simulated_aws()` starts moto's ThreadedMotoServer on a free port with the simulator
installed (its clock not yet running: a bench may wrap the simulator first) and yields it
with the server's URL and ECS and ECR clients; everything is stopped on the way out.
`worker_on(url, log, **settings)` runs a real Celery worker talking to that server.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REGION = "us-east-1"
ACCOUNT = "123456789012"
DUMMY_AWS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": REGION,
}
MANIFEST = (
    '{"schemaVersion": 2, "mediaType": '
    '"application/vnd.docker.distribution.manifest.v2+json", "layers": []}'
)


def repository(name: str) -> str:
    return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{name}"


@dataclass
class SimulatedAws:
    sim: object  # devtools.ecs_simulator.EcsSimulator
    url: str
    ecs: object
    ecr: object


@contextlib.contextmanager
def simulated_aws(*, task_start_seconds: float) -> Iterator[SimulatedAws]:
    import boto3
    from moto.server import ThreadedMotoServer

    from devtools.ecs_simulator import EcsSimulator

    # moto's server would log every request the worker makes.
    werkzeug = logging.getLogger("werkzeug")
    werkzeug_level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    sim = EcsSimulator(task_start_seconds=task_start_seconds)
    sim.install()
    try:
        aws = {
            "region_name": REGION,
            "endpoint_url": url,
            "aws_access_key_id": DUMMY_AWS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": DUMMY_AWS["AWS_SECRET_ACCESS_KEY"],
        }
        yield SimulatedAws(sim, url, boto3.client("ecs", **aws), boto3.client("ecr", **aws))
    finally:
        sim.stop_clock()
        sim.uninstall()
        server.stop()
        werkzeug.setLevel(werkzeug_level)


@contextlib.contextmanager
def worker_on(url: str, log: Path, **settings: str) -> Iterator[None]:
    """A real worker with dummy credentials, AWS_ENDPOINT_URL=url and the given settings."""
    from bench.__main__ import start_worker

    worker = start_worker(log, env={**DUMMY_AWS, "AWS_ENDPOINT_URL": url, **settings})
    try:
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=30)


def deploy_state(deploy) -> str:
    from deploys.models import Deploy

    return Deploy.objects.values_list("state", flat=True).get(pk=deploy.pk)


def is_final(deploy) -> bool:
    from deploys.states import FINAL_STATES

    return deploy_state(deploy) in FINAL_STATES


def wait_for(
    predicate: Callable[[], bool], what: str, *, timeout: float, log: str, every: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}; see {log}")
        time.sleep(every)


def all_completed(ecs, cluster, names, revisions=None) -> bool:
    """Is every named service's one deployment COMPLETED, all its tasks running (on the
    given revisions, when given)?"""
    described = []
    for start in range(0, len(names), 10):
        batch = names[start : start + 10]
        described += ecs.describe_services(cluster=cluster, services=batch)["services"]
    return len(described) == len(names) and all(
        (revisions is None or s["taskDefinition"] == revisions[s["serviceName"]])
        and len(s["deployments"]) == 1
        and s["deployments"][0]["rolloutState"] == "COMPLETED"
        and s["runningCount"] == s["desiredCount"]
        for s in described
    )


def branch_sha(remote: Path, branch: str) -> str:
    """The branch's head in a bench's own remote."""
    return subprocess.run(
        ["git", "rev-parse", f"refs/heads/{branch}"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def start_built_deploy(app, user, tag: str, *, branch: str = "bench/000"):
    """A deploy of the bench remote's branch whose build passed with image `tag`, moved on to
    `deploying` as the build's outcome would move it; returns the deploy."""
    from builds.models import Build, BuildStatus
    from deploys import pipeline
    from deploys.models import Deploy
    from deploys.states import State

    candidate = branch_sha(Path(app.git_remote_url), branch)
    deploy = Deploy.objects.create(
        application=app,
        branch=branch,
        requester=user,
        state=State.BUILDING,
        candidate_sha=candidate,
        head_sha=candidate,
    )
    build = Build.objects.create(
        deploy=deploy, attempt=1, status=BuildStatus.SUCCEEDED, image_tag=tag
    )
    pipeline.build_finished(deploy, build, passed=True, summary="bench")  # -> deploying
    return deploy


def start_services(ecs, cluster: str, names: list[str], image: str, tasks: int, log: str) -> None:
    """A cluster with the named ECS services on `image`, `tasks` tasks each, all running."""
    from devtools.ecs_simulator import create_service

    ecs.create_cluster(clusterName=cluster)
    for name in names:
        create_service(ecs, cluster=cluster, name=name, image=image, desired_count=tasks)
    wait_for(
        lambda: all_completed(ecs, cluster, names), "the services to start", timeout=120, log=log
    )
