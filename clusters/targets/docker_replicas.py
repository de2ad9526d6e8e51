"""A Docker placement's containers as the engine describes them: their labels, names and state.

Everything the target knows of a placement is read from here: each container's labels say
whose it is, which revision and replica it is, which batch started it, and the image and
config it was made from (the spec), so another worker can carry on from the engine alone.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import docker.errors
import requests

LABEL = "org.fatcontroller"
APPLICATION, SERVICE, PLACEMENT = f"{LABEL}.application", f"{LABEL}.service", f"{LABEL}.placement"
REVISION, START, REPLICA = f"{LABEL}.revision", f"{LABEL}.deploy-start", f"{LABEL}.replica"
BATCH, SPEC = f"{LABEL}.batch", f"{LABEL}.spec"
NAME_PART = re.compile(r"[^a-zA-Z0-9_.-]+")

# What the kernel's OOM killer leaves as a container's exit code (128 + SIGKILL); so does a
# kill from outside, which is why the engine's own word on an OOM kill is asked for as well.
SIGKILL_EXIT = 137
# How long to wait for the engine's "oom" event of a container that died with SIGKILL_EXIT:
# it comes a moment after the exit when the two notices crossed on their way to the engine.
OOM_EVENT_WAIT = 1.0


@dataclass
class Replica:
    """One labelled container, as the engine described it."""

    container: Any  # docker.models.containers.Container

    @property
    def labels(self) -> dict[str, str]:
        return self.container.attrs.get("Config", {}).get("Labels") or {}

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def revision(self) -> str:
        return self.labels.get(REVISION, "")

    @property
    def index(self) -> int:
        return int(self.labels.get(REPLICA, "0") or 0)

    @property
    def batch(self) -> int:
        return int(self.labels.get(BATCH, "0") or 0)

    @property
    def spec(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.labels.get(SPEC, ""))
        except ValueError:
            return None

    @property
    def state(self) -> dict[str, Any]:
        return self.container.attrs.get("State", {})

    @property
    def status(self) -> str:
        return self.state.get("Status", "")

    @property
    def health(self) -> str:
        """'healthy', 'unhealthy', 'starting', or '' where there is no health check."""
        return (self.state.get("Health") or {}).get("Status", "")

    def failure(self) -> tuple[str, str] | None:
        """(event, words) when it cannot serve: OOM-killed, exited, unhealthy."""
        code = self.state.get("ExitCode")
        if oom_killed(self.container):
            return "oom_killed", f"OOM-killed (exit {code})"
        if self.status in ("exited", "dead"):
            return "exited", f"exited with {code}"
        if self.health == "unhealthy":
            return "unhealthy", "unhealthy"
        return None

    def serving(self) -> bool:
        """Running and not known to be sick: worth keeping until its replacement is healthy."""
        return self.status == "running" and self.health in ("", "healthy")

    def healthy(self, grace: float) -> bool:
        if self.status != "running":
            return False
        if self.health:
            return self.health == "healthy"
        return self.grace_left(grace) <= 0

    def grace_left(self, grace: float) -> float:
        """Seconds until a running container with no health check counts as healthy."""
        return grace - _age(self.state.get("StartedAt", ""))


def oom_killed(container, wait: float = OOM_EVENT_WAIT) -> bool:
    """Did the kernel OOM-kill this container (docker.models.containers.Container, as last
    read)? The engine's OOMKilled flag says so when the kernel's OOM notice reached it before
    the exit; on a busy host the two can cross, the flag stays false, and the engine logs
    its "oom" event a moment after the exit instead. So a container that died with
    SIGKILL_EXIT without the flag is asked about up to `wait` seconds for that event; where
    the engine cannot be asked, it is not said to be OOM-killed (it still failed: exited)."""
    state = container.attrs.get("State", {})
    if state.get("OOMKilled"):
        return True
    if state.get("Status") not in ("exited", "dead") or state.get("ExitCode") != SIGKILL_EXIT:
        return False
    now = time.time()
    try:
        stream = container.client.api.events(
            since=stamp(now - _age(state.get("StartedAt", "")) - 1),
            until=stamp(now + wait),
            decode=True,
            filters={"container": container.id, "event": "oom"},
        )
        try:
            return next(iter(stream), None) is not None
        finally:
            stream.close()
    except (docker.errors.DockerException, requests.RequestException):
        return False


def stamp(seconds: float) -> str:
    """A Unix time as the engine's since/until take it: seconds.nanoseconds."""
    whole = int(seconds)
    return f"{whole}.{int((seconds - whole) * 1e9):09d}"


def _age(started_at: str) -> float:
    """Seconds since the engine's StartedAt (nanoseconds cut to microseconds)."""
    match = re.match(
        r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,6})?\d*(Z|[+-]\d\d:\d\d)$", started_at
    )
    if not match:
        return 0.0
    stamp = match[1] + (match[2] or "") + ("+00:00" if match[3] == "Z" else match[3])
    return time.time() - datetime.fromisoformat(stamp).timestamp()


def container_name(placement, revision: str, index: int) -> str:
    """fc-<app>-<service>-<placement>-<revision>-<replica>: one name per replica, so a retried
    create meets the container already made."""
    service = placement.service
    parts = ("fc", service.application.slug, service.name, str(placement.pk), revision, str(index))
    return "-".join(NAME_PART.sub("_", part) for part in parts)
