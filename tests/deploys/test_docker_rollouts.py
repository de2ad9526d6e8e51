"""Docker rollouts through the rollout engine and real Celery worker processes, on a real engine.

The application has two services on a Docker host (tests/docker_engine.py), three replicas
each: shop-worker in phase 1 (its own command, no health check) and shop-web in phase 2 (the
image's command, busybox httpd, health-checked with wget every 0.2 s). The old revision is
started through the target in this process; then a deploy whose build passed is rolled out
by worker processes (tests/deploys/test_rollout_worker_killed.py's), which find the engine
by the Cluster row. Images are built on the engine from Debian's busybox, never pulled: the
rollout's image is the application's image_repository and the build's tag, which the test
gives to a good image or to one that is OOM-killed, exits 1 or never turns healthy. A bad
image breaks shop-web only (shop-worker runs its own command), so the rollback brings back a
phase that went out as well as the one that failed.

Truth is read from the engine: containers by their placement label (exited ones included),
and the engine's own create events, so "each replica created once" is counted by Docker.
"""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
import threading
from collections import Counter
from typing import Any

import docker
import pytest

from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, ProcessType, Service
from clusters.targets import docker as docker_target
from clusters.targets import target_for
from clusters.targets.base import Progress, Watch
from clusters.targets.docker_replicas import (
    APPLICATION,
    PLACEMENT,
    REPLICA,
    REVISION,
    SERVICE,
    SPEC,
    START,
)
from deploys.models import Application, Deploy, RolloutStatus
from deploys.rollout.forward import start_rollout
from deploys.states import State
from devtools.docker_images import NoBusybox, base_image
from tests.clusters import conftest as target_fixtures
from tests.clusters.ledgers import Ledger
from tests.deploys import test_rollout_worker_killed as killed
from tests.deploys.test_rollout_worker_killed import (
    WORKER_START,
    candidate_deploy,
    running_workers,
    safety_net_until_final,
)
from tests.remotes import remote_main
from tests.waiting import wait_until

pytestmark = [pytest.mark.docker, killed.pytestmark]

REPOSITORY = "fc-rollout-test/shop"
OLD_TAG = "old"
PORT = 8080  # each container has its own network namespace (network "none"): no clashes
FAST_HEALTH = {
    "test": ["CMD", "wget", "-q", "-O", "-", f"http://127.0.0.1:{PORT}/"],
    "interval": 0.2,
    "timeout": 1,
    "retries": 2,
    # httpd may take more than two checks to listen on a busy machine (seen in CI: a good
    # replica turned unhealthy and the deploy rolled back): checks failing before it do not
    # count. The first that passes ends it, so a good replica is healthy as soon as it serves.
    "start_period": 3,
}
# What each image runs when the placement gives no command (shop-web).
COMMANDS = {
    "good": f"exec httpd -f -p {PORT} -h /www",
    "oom": "echo filling up; x=a; while true; do x=$x$x; done",
    "exit": "echo boom; exit 1",
    "unhealthy": "echo serving nothing; exec sleep 3600",
}
SERVICES = ("shop-worker", "shop-web")
R = RolloutStatus
ROLLOUT_TIMEOUT = 120.0  # a ceiling on a busy 2-core machine; a passing run takes seconds


def worker_config(**more) -> dict[str, Any]:
    return {
        "replicas": 3,
        "command": ["sleep", "3600"],
        "network": "none",
        "memory": "16m",
        "stop_timeout": 0,
        "grace": 0.5,
        **more,
    }


def web_config(**more) -> dict[str, Any]:
    return {
        "replicas": 3,
        "network": "none",
        "healthcheck": FAST_HEALTH,
        "memory": "32m",
        "stop_timeout": 0,
        "grace": 0.5,
        **more,
    }


# ---------------------------------------------------------------------------- fixtures


# The engine's client, with every placement's container removed afterwards.
engine = target_fixtures.engine


@pytest.fixture
def worker(transactional_db, settings, tmp_path, docker_engine):
    """Worker processes on Redis; the engine's address comes from the Cluster row, not env."""
    with running_workers(settings, tmp_path, {}) as workers:
        yield workers


def build_image(client, kind: str, tag: str) -> str:
    """REPOSITORY:tag, busybox running COMMANDS[kind], built with no pull (cached after once)."""
    try:
        base = base_image(client)
    except NoBusybox as exc:
        pytest.skip(str(exc))
    dockerfile = (
        f"FROM {base}\nCOPY index.html /www/index.html\n"
        f'CMD ["sh", "-c", {json.dumps(COMMANDS[kind])}]\n'
    )
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in {"Dockerfile": dockerfile, "index.html": f"{kind}\n"}.items():
            body = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data.seek(0)
    client.images.build(
        fileobj=data, custom_context=True, tag=f"{REPOSITORY}:{tag}", pull=False, rm=True
    )
    return f"{REPOSITORY}:{tag}"


def shop(application: Application, docker_engine) -> dict[str, Placement]:
    """The two services on the Docker host."""
    Application.objects.filter(pk=application.pk).update(
        image_repository=REPOSITORY, soak_seconds=1, phase_timeout_seconds=120
    )
    application.refresh_from_db()
    cluster = Cluster.objects.create(
        name="box-1", kind=ClusterKind.DOCKER, docker_host=docker_engine.host
    )
    made = {}
    for name, process_type, phase, config in (
        ("shop-worker", ProcessType.WORKER, 1, worker_config()),
        ("shop-web", ProcessType.WEB, 2, web_config()),
    ):
        service = Service.objects.create(
            application=application, name=name, process_type=process_type, phase=phase
        )
        made[name] = Placement.objects.create(
            service=service,
            cluster=cluster,
            kind=PlacementKind.DOCKER,
            docker_config=config,
        )
    return made


def run_old_revision(placements: dict[str, Placement], image: str) -> dict[str, dict[str, str]]:
    """Start the old revision through the target, in this process: {service: {name: spec}}."""
    for placement in placements.values():
        target = target_for(placement)
        ledger = Ledger()
        handle = target.start(placement, image, ledger)
        watch = Watch(placement, handle, ledger.revision_made)

        def out(target=target, watch=watch):
            (seen,) = target.observe([watch])
            assert seen.progress is not Progress.FAILED, seen.reason
            return seen.progress is Progress.OUT

        wait_until(out, 30, f"the old revision of {placement.service.name}", interval=0.1)
    return {name: specs(p) for name, p in placements.items()}


def containers(placement: Placement) -> list:
    """Every container of the placement, exited ones included."""
    client = docker_target.client(placement.cluster.docker_host)
    for _ in range(10):
        try:
            return client.containers.list(
                all=True, filters={"label": f"{PLACEMENT}={placement.pk}"}
            )
        except docker.errors.NotFound:  # one removed between the list and its inspect
            continue
    raise AssertionError(f"the containers of {placement} kept vanishing while listed")


def specs(placement: Placement) -> dict[str, str]:
    return {c.name: c.labels[SPEC] for c in containers(placement) if c.status == "running"}


class Creates:
    """The engine's container creates, by name, watched live from start() to stop(): the
    engine keeps only its last 256 events, and health checks fill that in seconds."""

    def __init__(self, engine):
        self.engine = engine
        self.counted: Counter = Counter()
        self.thread: threading.Thread | None = None
        self.stream = None

    def start(self) -> None:
        self.stream = self.engine.events(
            filters={"type": "container", "event": "create"}, decode=True
        )
        self.thread = threading.Thread(target=self._count, daemon=True)
        self.thread.start()

    def _count(self) -> None:
        try:
            for event in self.stream:
                attributes = event.get("Actor", {}).get("Attributes", {})
                if PLACEMENT in attributes:
                    self.counted[attributes["name"]] += 1
        except Exception:  # noqa: BLE001, S110 - the stream closed under it: stop counting
            pass

    def stop(self) -> Counter:
        """The creates counted so far, by container name; the watching ends."""
        if self.stream is not None:
            self.stream.close()
            self.thread.join(timeout=10)
        return self.counted


@pytest.fixture
def creates(engine):
    watched = Creates(engine)
    yield watched
    watched.stop()


def rollouts_of(deploy_id: int) -> dict[str, Any]:
    deploy = Deploy.objects.get(pk=deploy_id)
    return {r.placement.service.name: r for r in deploy.rollouts.select_related("placement")}


def timeline(deploy_id: int) -> str:
    deploy = Deploy.objects.get(pk=deploy_id)
    lines = [f"deploy #{deploy_id} is {deploy.state}"]
    lines += [
        f"  {e.from_state} -> {e.to_state}: {e.message}" for e in deploy.events.order_by("id")
    ]
    lines += [
        f"  rollout {name}: {r.status} {r.revision_before} -> {r.revision_made} {r.message}"
        for name, r in rollouts_of(deploy_id).items()
    ]
    return "\n".join(lines)


def ready(application, user, engine, docker_engine, new_kind: str = "good", **new_configs):
    """The shop on its old revision, and a deploy in building whose image is a `new_kind` one;
    new_configs (shop_web=...) are the placements' configs from then on."""
    placements = shop(application, docker_engine)
    old_image = build_image(engine, "good", OLD_TAG)
    deploy, build = candidate_deploy(application, user)
    build_image(engine, new_kind, build.image_tag)
    old = run_old_revision(placements, old_image)
    for key, config in new_configs.items():
        placement = placements[key.replace("_", "-")]
        placement.docker_config = config
        placement.save(update_fields=["docker_config"])
    return placements, deploy, build, old


def assert_new_revision_runs(placement: Placement, rollout, image: str) -> None:
    now = containers(placement)
    assert sorted(c.labels[REPLICA] for c in now) == ["1", "2", "3"], [c.name for c in now]
    for container in now:
        container.reload()
        labels = container.labels
        assert container.status == "running"
        assert labels[APPLICATION] == "demo-shop"
        assert labels[SERVICE] == placement.service.name
        assert labels[REVISION] == rollout.revision_made
        assert labels[START] == rollout.start_handle
        assert container.attrs["Config"]["Image"] == image
        health = container.attrs["State"].get("Health")
        if placement.service.name == "shop-web":
            assert health["Status"] == "healthy"


# ------------------------------------------------------------------------------- tests


def test_both_services_are_replaced_by_three_healthy_replicas_each_created_once(
    worker, engine, creates, docker_engine, application, user, demo_remote
):
    worker.start("worker-a")  # it boots while the rest is set up
    placements, deploy, build, old = ready(application, user, engine, docker_engine)
    creates.start()  # before anything is sent to a worker
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    assert state == State.SUCCEEDED, timeline(deploy.pk)
    deploy.refresh_from_db()
    assert remote_main(demo_remote) == deploy.candidate_sha
    rollouts = rollouts_of(deploy.pk)
    assert {r.status for r in rollouts.values()} == {R.DONE}
    image = f"{REPOSITORY}:{build.image_tag}"
    created = creates.stop()
    for name, placement in placements.items():
        rollout = rollouts[name]
        assert_new_revision_runs(placement, rollout, image)
        assert not set(specs(placement)) & set(old[name])  # the old containers are gone
        made = [c.name for c in containers(placement)]
        assert {n: created[n] for n in made} == dict.fromkeys(made, 1)  # each created once
        events = {e["event"] for e in rollout.detail["events"]}
        assert {"started", "replaced"} <= events
    assert sum(created.values()) == 6, created  # nothing else was created


FAILURES = {
    "oom": "OOM-killed (exit 137)",
    "exit": "exited with 1",
    "unhealthy": "unhealthy",
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_failing_new_revision_is_rolled_back_to_the_old_containers(
    worker, engine, docker_engine, application, user, demo_remote, failure
):
    worker.start("worker-a")
    main_before = remote_main(demo_remote)
    placements, deploy, build, old = ready(application, user, engine, docker_engine, failure)
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    assert state == State.ROLLED_BACK, timeline(deploy.pk)
    assert remote_main(demo_remote) == main_before
    reason = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK).message
    assert "fc-demo-shop-shop-web-" in reason, reason  # the container that failed
    assert FAILURES[failure] in reason, reason
    rollouts = rollouts_of(deploy.pk)
    assert {r.status for r in rollouts.values()} == {R.ROLLED_BACK}, timeline(deploy.pk)
    for name, placement in placements.items():
        # Same names (revision and replica), same image and config, same count, all running;
        # nothing of the new revision is left, exited or not.
        assert specs(placement) == old[name], name
        assert {c.labels[REVISION] for c in containers(placement)} == {
            rollouts[name].revision_before
        }
        assert len(containers(placement)) == 3


def test_a_worker_killed_mid_replace_is_replaced_with_no_replica_started_twice(
    worker, engine, creates, docker_engine, application, user, demo_remote
):
    worker_a = worker.start("killed-a")
    # One replica at a time: a replace long enough to be caught in the middle.
    placements, deploy, build, _ = ready(
        application,
        user,
        engine,
        docker_engine,
        shop_web=web_config(max_surge=100, min_healthy=50),
    )
    web = placements["shop-web"]
    creates.start()  # before anything is sent to a worker
    start_rollout(deploy, build)

    def mid_replace() -> bool:
        revisions = Counter(c.labels[REVISION] for c in containers(web))
        rollout = rollouts_of(deploy.pk).get("shop-web")  # the rows are made by the first tick
        if rollout is None or not 0 < revisions[rollout.revision_made] < 3:
            return False
        os.killpg(worker_a.process.pid, signal.SIGKILL)
        return True

    wait_until(mid_replace, WORKER_START, lambda: f"{timeline(deploy.pk)}\n{worker_a.log}")
    worker_a.kill()
    worker.start("rescuer-b")
    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    assert state == State.SUCCEEDED, timeline(deploy.pk)
    rollouts = rollouts_of(deploy.pk)
    image = f"{REPOSITORY}:{build.image_tag}"
    created = creates.stop()
    for name, placement in placements.items():
        assert_new_revision_runs(placement, rollouts[name], image)  # and nothing else
        assert len(containers(placement)) == 3  # no orphan, exited or running
    assert all(count == 1 for count in created.values()), created  # none started twice
    assert len(created) == 6, created
    started = deploy.events.filter(
        message__startswith="shop-web on box-1: ", message__contains=" -> "
    )
    # Started once: never twice (none, only if A died between writing the start and saying it).
    assert started.count() <= 1, timeline(deploy.pk)


def test_a_placement_with_no_hard_memory_limit_fails_the_deploy_before_any_container_changes(
    worker, engine, creates, docker_engine, application, user, demo_remote
):
    worker.start("worker-a")
    config = web_config()
    del config["memory"]
    # The old revision was started while the config still had its limit. The placement with
    # none is in phase 2: phase 1 must not go out either (every placement is asked first).
    placements, deploy, build, old = ready(
        application, user, engine, docker_engine, shop_web=config
    )
    before = {n: {(c.id, c.status) for c in containers(p)} for n, p in placements.items()}
    creates.start()  # before anything is sent to a worker
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    assert state == State.FAILED, timeline(deploy.pk)
    reason = deploy.events.get(from_state=State.DEPLOYING, to_state=State.FAILED).message
    assert "demo-shop/shop-web has no hard memory limit" in reason, reason
    assert reason.endswith(": no service was touched"), reason
    after = {n: {(c.id, c.status) for c in containers(p)} for n, p in placements.items()}
    assert after == before
    assert {n: specs(p) for n, p in placements.items()} == old
    assert creates.stop() == Counter()
