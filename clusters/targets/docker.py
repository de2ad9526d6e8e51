"""A Docker host behind the target interface (clusters/targets/base.py), through the docker SDK.

A placement of kind `docker` runs `replicas` containers of its service's image on its
cluster's engine (Cluster.docker_host: unix:///var/run/docker.sock, tcp://host:2376), with
the config of Placement.docker_config (clusters/targets/docker_config.py). A revision is the
first 12 hex of a sha256 of (image, normalized config): the same image and config are the
same revision.

Truth comes from the engine, never from memory: every container carries labels
(org.fatcontroller.application / .service / .placement / .revision / .deploy-start /
.replica / .batch, and .spec: the image and config it was made from), and is named
fc-<app>-<service>-<placement>-<revision>-<replica>, so a create retried after a worker died
meets the one already made (409: it is adopted) and no replica is ever started twice.

start() and restore() write what a restore needs on the ledger first (the old revision's
image, config and count in detail["before"]), then take the first step of a rolling
replace; each observe() takes another step: start the next batch (ECS's maximumPercent as
max_surge, minimumHealthyPercent as min_healthy), count a container healthy when the engine
says so (or when it has run for `grace` seconds and has no health check), stop old ones (the
stop signal, stop_timeout, then the kill) as far as min_healthy allows. Given a Watch.wait,
observe then waits on the engine's events (docker_events.py) and takes the next step as soon
as a container of the revision turns healthy, dies or is OOM-killed, until the placement is
out or failed or the wait is over: the rollout moves at the engine's pace, not the poll's. A
new container that exits, is OOM-killed or turns unhealthy fails the placement, its reason
naming the container with the last lines of its log. What each step did comes back as
Observation.events ({batch, containers, event, exit_code}), which `record_events` merges
into a ledger's detail["events"] (base.record_events; the rollout engine does it too).

Containers not labelled by Fat Controller are never touched. An image is looked for on the
host; one that names its registry (ghcr.io/team/shop:1) and is not there is looked up in
that registry and pulled before anything changes, with the registry's credentials from the
environment (FC_REGISTRY_USER_<HOST> / FC_REGISTRY_PASSWORD_<HOST>: registry.py).

Environment (fatcontroller/settings.py): FC_DOCKER_TIMEOUT, each call's timeout; for a tcp://
engine, FC_DOCKER_TLS_CA, FC_DOCKER_TLS_CERT and FC_DOCKER_TLS_KEY, the paths of its CA
certificate and of the client's certificate and key (a tcp:// engine off the loopback is
refused without them). One client per host per thread.
"""

from __future__ import annotations

import contextlib
import functools
import math
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlparse

import docker
import docker.errors
import docker.tls
import requests
from django.conf import settings

from ..health.memory_guard import fit_problem
from . import docker_events, registry
from .base import (
    Ledger,
    Observation,
    Progress,
    TargetRefused,
    TargetUnavailable,
    Watch,
    record_events,
)
from .docker_config import ConfigError, normalize, revision_of
from .docker_replace import Step
from .docker_replicas import PLACEMENT, REPLICA, REVISION, Replica

MIB = 1024 * 1024

# ------------------------------------------------------------------------ the engine


@contextlib.contextmanager
def _engine(host: str, action: str) -> Iterator[None]:
    """The one place where the SDK's errors become TargetUnavailable or TargetRefused."""
    try:
        yield
    except docker.errors.APIError as exc:
        status = exc.status_code or 0
        message = str(exc.explanation or exc)[:300]
        if status >= 500 or status == 0:
            raise TargetUnavailable(
                f"the Docker engine on {host} failed to {action}: {message}"
            ) from exc
        raise TargetRefused(f"the Docker engine on {host} refused to {action}: {message}") from exc
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
        raise TargetUnavailable(
            f"the Docker engine on {host} did not answer while trying to {action}"
        ) from exc
    except docker.errors.DockerException as exc:
        raise TargetUnavailable(f"could not {action} on {host}: {str(exc)[:300]}") from exc


_local = threading.local()


def client(host: str) -> docker.DockerClient:
    """This thread's client of the engine (a client's HTTP session is not shared safely)."""
    clients = _local.__dict__.setdefault("clients", {})
    if host not in clients:
        tls = _tls(host)
        with _engine(host, "connect"):
            clients[host] = docker.DockerClient(
                base_url=host, tls=tls, timeout=settings.FC_DOCKER_TIMEOUT
            )
    return clients[host]


def forget_clients() -> None:
    for made in _local.__dict__.pop("clients", {}).values():
        made.close()


def _tls(host: str) -> docker.tls.TLSConfig | bool:
    if not host.startswith("tcp://"):
        return False
    ca, cert, key = (
        settings.FC_DOCKER_TLS_CA,
        settings.FC_DOCKER_TLS_CERT,
        settings.FC_DOCKER_TLS_KEY,
    )
    if ca or cert or key:
        return docker.tls.TLSConfig(
            client_cert=(cert, key) if cert and key else None,
            ca_cert=ca or None,
            verify=ca or True,
        )
    if urlparse(host).hostname in ("127.0.0.1", "localhost", "::1"):
        return False
    raise TargetRefused(
        f"{host} is a tcp:// engine and there are no TLS settings: set FC_DOCKER_TLS_CA, "
        "FC_DOCKER_TLS_CERT and FC_DOCKER_TLS_KEY"
    )


def spec_of(placement, image: str) -> dict[str, Any]:
    """(image, normalized config) of the placement: TargetRefused when it cannot run."""
    try:
        config = normalize(placement.docker_config, container=who(placement))
    except ConfigError as exc:
        raise TargetRefused(f"{exc}; nothing was changed") from exc
    return {"image": image, "config": config}


def who(placement) -> str:
    return f"{placement.service.application.slug}/{placement.service.name}"


class DockerTarget:
    """One Docker engine, as a rollout target."""

    start_word = "replace"
    instance_word = "container"
    waits = True  # observe waits on the engine's events (base.Watch.wait)

    def __init__(self, host: str):
        self.host = host

    @property
    def client(self) -> docker.DockerClient:
        return client(self.host)

    def engine(self, action: str):
        return _engine(self.host, action)

    # -------------------------------------------------------------- the interface

    def name(self, placement) -> str:
        return f"{placement.service.name} on {placement.cluster.name}"

    def label(self, revision: str) -> str:
        return revision[:12] if revision else "nothing"

    def current(self, placement) -> str:
        running = [r for r in self.replicas(placement) if r.status == "running"]
        if not running:
            return ""
        counted: dict[str, int] = {}
        for replica in running:
            counted[replica.revision] = counted.get(replica.revision, 0) + 1
        return max(counted, key=lambda revision: counted[revision])

    def refusal(self, placement, image: str) -> str:
        """Why the placement's config could not run ('' when it could): asked of every
        placement before any is touched (base.Target)."""
        try:
            normalize(placement.docker_config, container=who(placement))
        except ConfigError as exc:
            return str(exc)
        return ""

    def memory_problems(self, placement) -> list[str]:
        """The memory guard's fit (clusters/health/memory_guard.py): the containers a replace starts
        beside the running ones (its surge) must fit the host's memory less every running
        container's hard limit. The hard limit itself is the config's (refusal)."""
        try:
            config = normalize(placement.docker_config, container=who(placement))
        except ConfigError:
            return []  # refusal says why
        memory = self.host_memory()
        if not memory.total:
            return []
        surge = max(1, math.ceil(config["replicas"] * (config["max_surge"] - 100) / 100))
        problem = fit_problem(
            self.name(placement),
            desired=min(surge, config["replicas"]),
            each=math.ceil(config["memory"] / MIB),
            left={placement.cluster.name: memory.left // MIB},
            hosts_word="Docker host, less the running containers' hard limits",
        )
        return [problem] if problem else []

    def host_memory(self) -> HostMemory:
        """The host's memory and every running container's hard limit, ours or not."""
        with self.engine("read the host's memory"):
            total = int(self.client.info().get("MemTotal") or 0)
            running = self.client.api.containers(filters={"status": "running"})
            limits = {}
            for entry in running:
                try:
                    found = self.client.api.inspect_container(entry["Id"])
                except docker.errors.NotFound:
                    continue  # gone since the list: it holds nothing now
                name = (found.get("Name") or entry["Id"][:12]).lstrip("/")
                limits[name] = int(found["HostConfig"].get("Memory") or 0)
        return HostMemory(total=total, limits=limits)

    def start(self, placement, image: str, ledger: Ledger) -> str:
        spec = spec_of(placement, image)  # refused before anything changes
        if not self.image_exists(image):
            raise TargetRefused(
                f"the image {image} is not on {placement.cluster.name}; nothing was changed"
            )
        if "before" not in ledger.detail:
            # Written before anything changes: it is what a restore puts back.
            before = self.current(placement)
            ledger.write(
                revision_before=before,
                detail={**ledger.detail, "before": self._before(placement, before)},
            )
        revision = revision_of(spec["image"], spec["config"])
        if ledger.revision_made != revision:
            ledger.write(revision_made=revision)
        handle = f"replace-{revision}"
        seen = Step(self, placement, revision, handle, spec).take()
        record_events(ledger, seen.events)
        ledger.write(start_handle=handle)
        return handle

    def restore(self, placement, revision: str, ledger: Ledger) -> str:
        before = ledger.detail.get("before") or {}
        if before.get("revision", "") == revision and before.get("image"):
            spec: dict[str, Any] | None = {"image": before["image"], "config": before["config"]}
        else:
            spec = next(
                (r.spec for r in self.replicas(placement) if r.revision == revision and r.spec),
                None,
            )
        if revision and spec is None:
            raise TargetRefused(
                f"nothing recorded of revision {revision} of {self.name(placement)}: "
                "its image and config are not known, so it cannot be brought back"
            )
        handle = f"restore-{revision or 'nothing'}"
        seen = Step(self, placement, revision, handle, spec).take()
        record_events(ledger, seen.events)
        ledger.write(restore_handle=handle)
        return handle

    def observe(self, watches: Sequence[Watch]) -> list[Observation]:
        """A step of each watch; then, with Watch.wait, more steps as the engine's events
        say something changed, until each is out or one failed or the wait is over."""
        since = time.time()
        steps = [self._step(watch) for watch in watches]
        answers = [answer for answer, _ in steps]
        wait = max((watch.wait for watch in watches), default=0.0)
        deadline = time.monotonic() + wait
        while wait > 0 and not any(a.progress is Progress.FAILED for a in answers):
            going = [i for i, a in enumerate(answers) if _going(a)]
            left = deadline - time.monotonic()
            if not going or left <= 0:
                break
            due = [steps[i][1].due for i in going if steps[i][1].due is not None]
            watched = {str(watches[i].placement.pk): watches[i].revision for i in going}
            try:
                with self.engine("watch the events"):
                    woke = docker_events.changed(
                        self.client, watched, since, min([left, *(d + 0.05 for d in due)])
                    )
            except (TargetRefused, TargetUnavailable):
                woke = None  # the answers stand; the next poll looks again
            if woke is None:
                break
            if not woke and time.monotonic() >= deadline:
                answers = [replace(a, waited=True) if _going(a) else a for a in answers]
                break
            since = time.time()
            for i in going:
                steps[i] = self._step(watches[i])
                answers[i] = _merged(answers[i], steps[i][0])
        return answers

    def _step(self, watch: Watch) -> tuple[Observation, Step | None]:
        step = Step(self, watch.placement, watch.revision, watch.handle, None)
        try:
            return step.take(), step
        except (TargetRefused, TargetUnavailable) as exc:
            return Observation(Progress.PROGRESSING, error=exc), None

    def image_exists(self, image: str) -> bool:
        """On the host; or, for an image that names its registry, pullable from it: then it
        is pulled now, with that registry's FC_REGISTRY_* credentials (registry.py), so that
        nothing is changed before it is there. An image with no registry in its name (Docker
        Hub implied) is looked for on the host only: the demo's images are made there."""
        if self._on_host(image):
            return True
        if not registry.names_registry(image) or not registry.image_in_registry(image):
            return False
        self._pull(image)
        return True

    def _on_host(self, image: str) -> bool:
        with self.engine(f"look up the image {image}"):
            try:
                self.client.images.get(image)
            except docker.errors.ImageNotFound:
                return False
        return True

    def _pull(self, image: str) -> None:
        ref = registry.parse_reference(image)
        credentials = registry.credentials_for(ref.host)
        auth = {"username": credentials[0], "password": credentials[1]} if credentials else None
        repository, tag = f"{ref.host}/{ref.name}", ref.reference
        with self.engine(f"pull {image}"):
            for progress in self.client.api.pull(
                repository, tag=tag, auth_config=auth, stream=True, decode=True
            ):
                if isinstance(progress, dict) and progress.get("error"):
                    raise TargetUnavailable(
                        f"the Docker engine on {self.host} could not pull {image}: "
                        f"{str(progress['error'])[:300]}"
                    )
        if not self._on_host(image):
            raise TargetUnavailable(f"{image} was pulled but is not on {self.host}")

    def scale_to_zero(self, placement) -> list[str]:
        """Stop every running container of the placement (each its stop signal and
        stop_timeout), keeping them and their labels; returns the names stopped."""
        running = [r for r in self.replicas(placement) if r.status == "running"]
        for replica in running:
            allowed = ((replica.spec or {}).get("config") or {}).get("stop_timeout", 10)
            with self.engine(f"stop {replica.name}"):
                try:
                    replica.container.stop(timeout=allowed)
                except docker.errors.NotFound:
                    pass
        return [r.name for r in running]

    # ---------------------------------------------------------------------- reading

    def replicas(self, placement) -> list[Replica]:
        """The placement's labelled containers, whatever their state."""
        with self.engine(f"list the containers of {self.name(placement)}"):
            found = self.client.containers.list(
                all=True, filters={"label": f"{PLACEMENT}={placement.pk}"}, ignore_removed=True
            )
        return [Replica(c) for c in found]

    def containers(self, placement, *, timeout: float | None = None) -> list[Container]:
        """Read only, for the pages: the placement's labelled containers as the engine lists
        them now, replica order. One call (the list, no inspect per container), so a page waits
        on at most one answer per placement; with `timeout`, on a client of its own that gives
        up after that many seconds, not the rollout's FC_DOCKER_TIMEOUT."""
        action = f"list the containers of placement {placement.pk}"
        if timeout is None:
            return self._containers(self.client, placement, action)
        tls = _tls(self.host)
        with self.engine("connect"):
            made = docker.DockerClient(base_url=self.host, tls=tls, timeout=timeout)
        try:
            return self._containers(made, placement, action)
        finally:
            made.close()

    def _containers(self, engine, placement, action: str) -> list[Container]:
        with self.engine(action):
            listed = engine.api.containers(
                all=True, filters={"label": f"{PLACEMENT}={placement.pk}"}
            )
        found = [Container.listed(c) for c in listed if isinstance(c, dict)]
        return sorted(found, key=lambda c: (c.replica, c.revision, c.name))

    def _before(self, placement, revision: str) -> dict[str, Any]:
        """What a restore brings back: the revision's image, config and count."""
        if not revision:
            return {"revision": "", "image": "", "config": None, "replicas": 0}
        mine = [r for r in self.replicas(placement) if r.revision == revision]
        spec = next((r.spec for r in mine if r.spec), None) or {}
        config = spec.get("config")
        return {
            "revision": revision,
            "image": spec.get("image", ""),
            "config": config,
            "replicas": (config or {}).get("replicas", len(mine)),
            "running": sum(r.status == "running" for r in mine),
        }


# The list's Status ends in the health where there is a check: "Up 5 seconds (healthy)",
# "Up 2 seconds (health: starting)", "Up 1 minute (unhealthy)".
_HEALTH = re.compile(r"\((healthy|unhealthy|health: starting)\)\s*$")


@dataclass(frozen=True)
class Container:
    """A labelled container as the engine's list describes it."""

    name: str
    revision: str
    replica: int
    state: str  # running, exited, created, restarting, dead, ...
    health: str  # healthy, unhealthy, starting, or "" where there is no health check
    status: str  # the engine's words: "Up 5 seconds (healthy)", "Exited (137) 2 minutes ago"

    @classmethod
    def listed(cls, entry: dict[str, Any]) -> Container:
        labels = entry.get("Labels") or {}
        names = entry.get("Names") or [""]
        status = str(entry.get("Status") or "")
        health = _HEALTH.search(status)
        replica = str(labels.get(REPLICA, ""))
        return cls(
            name=str(names[0]).lstrip("/"),
            revision=str(labels.get(REVISION, "")),
            replica=int(replica) if replica.isdigit() else 0,
            state=str(entry.get("State") or ""),
            health=health.group(1).removeprefix("health: ") if health else "",
            status=status,
        )


@dataclass(frozen=True)
class HostMemory:
    """A Docker host's memory in bytes (the engine's MemTotal) and its running containers'
    hard limits by name (0: none, so it may take all of it)."""

    total: int
    limits: dict[str, int]

    @property
    def limited(self) -> int:
        return sum(self.limits.values())

    @property
    def left(self) -> int:
        """What the hard limits leave for the Docker daemon and the rest of the system."""
        return max(0, self.total - self.limited)

    @property
    def unlimited(self) -> list[str]:
        return sorted(name for name, limit in self.limits.items() if not limit)


def _going(answer: Observation) -> bool:
    """Neither out nor failed, and looked at: a change is worth waiting for."""
    return answer.progress is Progress.PROGRESSING and answer.error is None


def _merged(earlier: Observation, later: Observation) -> Observation:
    """The later step's answer, with the events of both (each once)."""
    events = earlier.events + tuple(e for e in later.events if e not in earlier.events)
    return replace(later, events=events)


@functools.cache
def _target(host: str) -> DockerTarget:
    return DockerTarget(host)


def target_for_host(host: str) -> DockerTarget:
    """The target of one engine (the cluster checks look at a host, not a placement)."""
    return _target(host)


def target_for(placement) -> DockerTarget:
    """The target of a Docker placement: its cluster's engine (one object per host)."""
    host = placement.cluster.docker_host
    if not host:
        raise TargetRefused(f"the cluster {placement.cluster.name} has no Docker host address")
    return _target(host)
