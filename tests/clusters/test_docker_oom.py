"""Whether the kernel OOM-killed a container, asked of a real engine: its OOMKilled flag, or,
where the kernel's notice and the exit crossed on their way to the engine and the flag stayed
false, the "oom" event it logs a moment later; a SIGKILL from outside is not an OOM kill
(tests/docker_engine.py)."""

import time

import pytest

from clusters.targets import docker_replicas
from clusters.targets.docker_replicas import Replica, oom_killed
from tests.clusters.docker_world import run_labelled


def run(engine, image, command):
    return run_labelled(engine, image, "950", "rev-a", command, memswap_limit="16m")


@pytest.mark.docker
def test_a_container_over_its_limit_is_oom_killed(engine, image):
    container = run(engine, image, ["sh", "-c", "x=a; while true; do x=$x$x; done"])
    assert container.wait(timeout=60)["StatusCode"] == docker_replicas.SIGKILL_EXIT
    container.reload()

    assert oom_killed(container) is True
    assert Replica(container).failure() == ("oom_killed", "OOM-killed (exit 137)")


@pytest.mark.docker
def test_a_container_killed_from_outside_is_not_oom_killed(engine, image):
    container = run(engine, image, ["sleep", "300"])
    container.kill()
    assert container.wait(timeout=60)["StatusCode"] == docker_replicas.SIGKILL_EXIT
    container.reload()
    assert container.attrs["State"]["OOMKilled"] is False

    assert oom_killed(container, wait=0.5) is False
    assert Replica(container).failure() == ("exited", "exited with 137")


class Crossed:
    """A container whose exit the engine heard of before the kernel's OOM notice: exited 137,
    the flag false, and the engine's "oom" event logged (or, with `events` None, an engine
    that cannot be reached)."""

    id = "c" * 64

    def __init__(self, events):
        self.attrs = {
            "State": {
                "Status": "exited",
                "ExitCode": 137,
                "OOMKilled": False,
                "StartedAt": "2026-12-06T20:00:00.123456789Z",
            }
        }
        self.client = self
        self.api = self
        self.events_given = events
        self.asked = []

    def events(self, **query):
        self.asked.append(query)
        if self.events_given is None:
            raise docker_replicas.requests.ConnectionError("the engine is not there")
        self.stream = Stream(self.events_given)
        return self.stream


class Stream(list):
    closed = False

    def close(self):
        self.closed = True


def test_an_oom_event_after_the_exit_counts_where_the_flag_missed_it():
    crossed = Crossed([{"status": "oom", "id": Crossed.id}])
    asked_at = time.time()
    assert oom_killed(crossed, wait=0.5) is True
    (query,) = crossed.asked
    assert query["filters"] == {"container": Crossed.id, "event": "oom"}
    # From just before it started to the wait given from now, as seconds.nanoseconds.
    assert query["since"].startswith("1796587199.")
    assert asked_at + 0.5 <= float(query["until"]) <= time.time() + 0.5
    assert crossed.stream.closed


def test_no_oom_event_or_no_engine_to_ask_is_not_an_oom_kill():
    assert oom_killed(Crossed([])) is False
    assert oom_killed(Crossed(None)) is False


def test_a_running_or_otherwise_ended_container_is_not_asked_about():
    crossed = Crossed([{"status": "oom"}])
    crossed.attrs["State"]["ExitCode"] = 1
    assert oom_killed(crossed) is False
    crossed.attrs["State"].update(ExitCode=0, Status="running")
    assert oom_killed(crossed) is False
    assert crossed.asked == []
