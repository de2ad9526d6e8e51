"""Fixtures of the Docker target's tests: a client of the test engine that removes what the
test left, a busybox image, and a placement on the engine (tests/docker_engine.py)."""

import pytest

from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, ProcessType, Service
from clusters.targets import docker as docker_target
from clusters.targets.docker_replicas import PLACEMENT
from deploys.models import Application

from .docker_world import busybox_image, web


@pytest.fixture
def engine(docker_engine):
    client = docker_engine.client()
    yield client
    for container in client.containers.list(all=True, filters={"label": PLACEMENT}):
        container.remove(force=True)
    client.close()
    docker_target.forget_clients()


@pytest.fixture
def image(engine, request):
    name = request.node.name.split("[")[0][5:40].lower().rstrip("_.-")
    return busybox_image(engine, f"fc-test-{name}")


@pytest.fixture
def placement(db, docker_engine):
    app = Application.objects.create(
        slug="shop", name="Shop", git_remote_url="/nowhere.git", default_branch="main"
    )
    cluster = Cluster.objects.create(
        name="docker-host-1", kind=ClusterKind.DOCKER, docker_host=docker_engine.host
    )
    service = Service.objects.create(application=app, name="web", process_type=ProcessType.WEB)
    return Placement.objects.create(
        service=service, cluster=cluster, kind=PlacementKind.DOCKER, docker_config=web("1")
    )
