"""The Docker-host target against a real engine: rolling replaces, real OOM kills, exits and
failing health checks, restores, and a worker that dies part way (tests/docker_engine.py)."""

import time

import pytest

from clusters.targets import docker as docker_target
from clusters.targets import target_for
from clusters.targets.base import Progress, TargetRefused, Watch, record_events
from clusters.targets.docker_config import normalize
from clusters.targets.docker_replace import Step
from clusters.targets.docker_replicas import REPLICA, REVISION, SPEC

from .docker_world import FAST, containers, web
from .ledgers import Ledger

pytestmark = pytest.mark.docker


def drive(target, watch: Watch, ledger: Ledger, timeout: float = 45.0, check=None):
    """Observe until OUT or FAILED, as the rollout engine ticks, keeping the events."""
    deadline = time.monotonic() + timeout
    while True:
        (seen,) = target.observe([watch])
        assert seen.error is None, seen.error
        record_events(ledger, seen.events)
        if check:
            check()
        if seen.progress is not Progress.PROGRESSING:
            return seen
        assert time.monotonic() < deadline, f"still {seen} after {timeout} s"
        time.sleep(0.1)  # the engine's tick, shortened


def deploy(placement, image, ledger=None, check=None):
    ledger = ledger or Ledger()
    target = target_for(placement)
    handle = target.start(placement, image, ledger)
    seen = drive(target, Watch(placement, handle, ledger.revision_made), ledger, check=check)
    return seen, ledger


def restore(placement, ledger):
    target = target_for(placement)
    handle = target.restore(placement, ledger.revision_before, ledger)
    return drive(target, Watch(placement, handle, ledger.revision_before), ledger)


def test_three_replicas_are_replaced_by_healthy_ones_of_the_new_revision(engine, image, placement):
    first, old = deploy(placement, image)
    assert first.progress is Progress.OUT
    assert old.revision_before == ""
    old_ids = {c.id for c in containers(engine, placement)}
    assert len(old_ids) == 3

    placement.docker_config = web("2")
    seen, ledger = deploy(placement, image)

    assert (seen.progress, seen.running, seen.desired) == (Progress.OUT, 3, 3)
    now = containers(engine, placement)
    assert len(now) == 3 and not {c.id for c in now} & old_ids
    for container in now:
        container.reload()
        labels = container.labels
        assert container.status == "running"
        assert container.attrs["State"]["Health"]["Status"] == "healthy"
        assert labels["org.fatcontroller.application"] == "shop"
        assert labels["org.fatcontroller.service"] == "web"
        assert labels[REVISION] == ledger.revision_made
        assert labels["org.fatcontroller.deploy-start"] == ledger.start_handle
        assert container.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
        assert "VERSION=2" in container.attrs["Config"]["Env"]
    assert sorted(c.labels[REPLICA] for c in now) == ["1", "2", "3"]
    target = target_for(placement)
    assert target.current(placement) == ledger.revision_made != old.revision_made
    assert ledger.revision_before == old.revision_made
    before = ledger.detail["before"]
    assert (before["image"], before["replicas"]) == (image, 3)
    assert before["config"] == normalize(web("1"), container="shop/web")
    events = {e["event"] for e in ledger.detail["events"]}
    assert {"started", "healthy", "replaced"} <= events
    assert target.name(placement) == "web on docker-host-1"
    assert target.label(ledger.revision_made) == ledger.revision_made[:12]


FAILURES = {
    # Allocates past its 16m limit: the kernel kills it.
    "oom": (
        {
            "command": ["sh", "-c", "echo filling up; x=a; while true; do x=$x$x; done"],
            "healthcheck": None,
            "memory": "16m",
            "grace": 3,
        },
        ["OOM-killed (exit 137)", "filling up"],
        "oom_killed",
    ),
    "exit": (
        {"command": ["sh", "-c", "echo boom; exit 1"], "healthcheck": None, "grace": 3},
        ["exited with 1", "boom"],
        "exited",
    ),
    "unhealthy": (
        {"healthcheck": {"test": ["CMD", "false"], **FAST}, "max_surge": 100, "min_healthy": 50},
        ["unhealthy"],
        "unhealthy",
    ),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_new_revision_that_fails_is_failed_with_its_reason_and_the_old_one_restored(
    engine, image, placement, failure
):
    deploy(placement, image)
    old = {c.name: c.labels[SPEC] for c in containers(engine, placement)}
    change, words, event = FAILURES[failure]

    placement.docker_config = {**web("2"), **change}
    seen, ledger = deploy(placement, image)

    assert seen.progress is Progress.FAILED
    assert "fc-shop-web-" in seen.reason
    for said in words:
        assert said in seen.reason
    assert event in {e["event"] for e in ledger.detail["events"]}

    back = restore(placement, ledger)

    assert (back.progress, back.running, back.desired) == (Progress.OUT, 3, 3)
    now = containers(engine, placement)
    assert {c.name: c.labels[SPEC] for c in now} == old  # same image, config and count
    assert all(c.labels[REVISION] == ledger.revision_before for c in now)
    assert target_for(placement).current(placement) == ledger.revision_before


def test_no_hard_memory_limit_is_refused_before_any_container_changes(engine, image, placement):
    deploy(placement, image)
    before = {(c.id, c.status) for c in containers(engine, placement)}
    config = web("2")
    del config["memory"]
    placement.docker_config = config
    ledger = Ledger()

    with pytest.raises(TargetRefused) as refused:
        target_for(placement).start(placement, image, ledger)

    assert str(refused.value) == (
        "shop/web has no hard memory limit: set memory for shop/web in the config file; "
        "nothing was changed"
    )
    assert {(c.id, c.status) for c in containers(engine, placement)} == before
    assert ledger.writes == []


def test_an_image_missing_from_the_host_is_refused_before_anything_changes(
    engine, image, placement
):
    target = target_for(placement)
    assert target.image_exists(image)
    assert not target.image_exists("fc-test-never-made:1")
    ledger = Ledger()
    with pytest.raises(TargetRefused, match="not on docker-host-1"):
        target.start(placement, "fc-test-never-made:1", ledger)
    assert containers(engine, placement) == [] and ledger.writes == []


def test_a_start_killed_part_way_is_finished_by_a_fresh_target_with_no_replica_twice(
    engine, image, placement, docker_engine
):
    deploy(placement, image)
    placement.docker_config = web("2", max_surge=100, min_healthy=50)
    ledger = Ledger()
    first = docker_target.DockerTarget(docker_engine.host)
    first.start(placement, image, ledger)
    made = ledger.revision_made
    first.observe([Watch(placement, ledger.start_handle, made)])
    # The worker dies here. Another, with nothing in memory, is handed the same ledger; its
    # start is retried (the first one's handle may never have been written).
    docker_target.forget_clients()
    ledger.write(start_handle="")
    second = docker_target.DockerTarget(docker_engine.host)
    second.start(placement, image, ledger)
    assert ledger.revision_made == made and ledger.revision_before != made

    def never_twice():
        listed = containers(engine, placement)
        replicas = [(c.labels[REVISION], c.labels[REPLICA]) for c in listed]
        assert len(replicas) == len(set(replicas))
        assert len(listed) <= 3  # max_surge 100: never more than the replicas

    seen = drive(second, Watch(placement, ledger.start_handle, made), ledger, check=never_twice)

    assert seen.progress is Progress.OUT
    now = containers(engine, placement)
    assert sorted((c.labels[REVISION], c.labels[REPLICA]) for c in now) == [
        (made, "1"),
        (made, "2"),
        (made, "3"),
    ]


def test_a_retried_create_adopts_the_container_already_made(engine, image, placement):
    target = target_for(placement)
    spec = docker_target.spec_of(placement, image)
    step = Step(target, placement, "abcdef123456", "replace-abcdef123456", spec)

    first = step._create(1, 1, spec)
    again = step._create(1, 1, spec)

    assert first == again
    assert [c.name for c in containers(engine, placement)] == [first]


def test_containers_that_do_not_fit_the_hosts_memory_are_a_memory_guard_problem(engine, placement):
    target = target_for(placement)
    assert target.memory_problems(placement) == []  # 3 x 32m, on any host that runs tests

    placement.docker_config = web("1", memory="4096g")
    (problem,) = target.memory_problems(placement)

    assert problem.startswith("web on docker-host-1: 3 x 4194304 MiB do not fit the memory")
    assert "left on its Docker host, less the running containers' hard limits" in problem
    assert problem.endswith("room for 0")
