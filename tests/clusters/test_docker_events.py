"""Waiting on a real engine's events: a change of the watched revision wakes the wait, another
revision's does not, and one observe with a wait takes a replace as far as the engine lets it
(tests/docker_engine.py)."""

import time

import pytest

from clusters.targets import docker_events, target_for
from clusters.targets.base import Progress, Watch
from tests.clusters.docker_world import FAST, HEALTHY, web
from tests.clusters.docker_world import run_labelled as run
from tests.clusters.ledgers import Ledger
from tests.waiting import wait_until

pytestmark = pytest.mark.docker


def test_a_health_change_of_the_watched_revision_wakes_the_wait(engine, image):
    since = time.time()
    check = {"test": HEALTHY["test"], "interval": int(0.2e9), "timeout": int(1e9), "retries": 2}
    run(
        engine,
        image,
        "901",
        "rev-a",
        ["httpd", "-f", "-p", "8080", "-h", "/www"],
        healthcheck=check,
    )

    assert docker_events.changed(engine, {"901": "rev-b"}, since, 1.0) is False
    assert docker_events.changed(engine, {"902": "rev-a"}, since, 0.5) is False
    assert docker_events.changed(engine, {"901": "rev-a"}, since, 30.0) is True


def test_a_death_is_found_in_the_engines_record_without_waiting(engine, image):
    since = time.time()
    container = run(engine, image, "903", "rev-a", ["sh", "-c", "exit 3"])
    wait_until(lambda: container.reload() or container.status == "exited", timeout=30)

    assert docker_events.died(engine, {"903": "rev-a"}, since) is True
    assert docker_events.died(engine, {"903": "rev-b"}, since) is False
    assert docker_events.died(engine, {"903": "rev-a"}, time.time() + 1) is False


def test_the_engines_time_format_keeps_the_fraction_as_nanoseconds():
    assert docker_events.stamp(1700000000.25) == "1700000000.250000000"
    assert docker_events.stamp(5.0) == "5.000000000"


def start(placement, image):
    ledger = Ledger()
    target = target_for(placement)
    handle = target.start(placement, image, ledger)
    return target, ledger, handle


def test_one_observe_with_a_wait_takes_a_replace_to_out(engine, image, placement):
    target, ledger, handle = start(placement, image)

    (seen,) = target.observe([Watch(placement, handle, ledger.revision_made, wait=60)])

    assert (seen.progress, seen.running, seen.desired) == (Progress.OUT, 3, 3)
    assert not seen.waited
    assert "started" in {e["event"] for e in ledger.detail["events"]}  # by the start
    assert {e["event"] for e in seen.events} == {"healthy"}  # seen while the observe waited


def test_a_grace_with_no_event_to_mark_it_ends_the_wait_too(engine, image, placement):
    placement.docker_config = web("1", healthcheck=None, grace=1)
    target, ledger, handle = start(placement, image)

    (seen,) = target.observe([Watch(placement, handle, ledger.revision_made, wait=60)])

    assert (seen.progress, seen.running) == (Progress.OUT, 3)


def test_an_oom_kill_fails_the_waiting_observe_at_once(engine, image, placement):
    placement.docker_config = web(
        "1",
        command=["sh", "-c", "echo filling up; x=a; while true; do x=$x$x; done"],
        healthcheck=None,
        memory="16m",
        grace=30,
    )
    target, ledger, handle = start(placement, image)

    (seen,) = target.observe([Watch(placement, handle, ledger.revision_made, wait=60)])

    assert seen.progress is Progress.FAILED
    assert "OOM-killed (exit 137)" in seen.reason


def test_a_wait_that_sees_no_change_says_it_waited(engine, image, placement):
    # A first check only after a minute: the containers stay "starting" throughout.
    slow = {**HEALTHY, **FAST, "interval": 60, "start_period": 60}
    placement.docker_config = web("1", healthcheck=slow)
    target, ledger, handle = start(placement, image)

    (seen,) = target.observe([Watch(placement, handle, ledger.revision_made, wait=0.5)])
    (polled,) = target.observe([Watch(placement, handle, ledger.revision_made)])

    assert seen.progress is Progress.PROGRESSING and seen.waited
    assert polled.progress is Progress.PROGRESSING and not polled.waited
