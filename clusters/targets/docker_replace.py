"""One step of a rolling replace on a Docker host: what observe() does each time it is called.

A step reads the placement's containers from the engine and moves them one step toward
`replicas` healthy containers of the watched revision and none of any other:

1. a container of the revision that exited, was OOM-killed or turned unhealthy fails the
   placement (nothing else is done: the restore that follows cleans up);
2. one created but never started (its worker died in between) is started;
3. containers of other revisions that serve nothing (exited, sick, still starting) are
   removed at once; serving ones are stopped (stop signal, stop_timeout, kill) as far as
   min_healthy allows, counting the revision's healthy containers;
4. missing replicas are created as far as max_surge allows: a batch. Once one of the batch
   has died (the engine's events say so), no more are made: the next step fails it.

The step is OUT only when exactly `replicas` containers of the revision are healthy and no
container of another revision is left. With the revision '' (nothing ran before), a step
removes everything and is OUT once nothing is left.
"""

from __future__ import annotations

import math
import time
from typing import Any

import docker.errors

from . import docker_events
from .base import Observation, Progress
from .docker_config import canonical, healthcheck_for_engine
from .docker_replicas import (
    APPLICATION,
    BATCH,
    PLACEMENT,
    REPLICA,
    REVISION,
    SERVICE,
    SPEC,
    START,
    Replica,
    container_name,
)

LOG_LINES = 5
LOG_CHARS = 600


class Step:
    def __init__(self, target, placement, revision: str, handle: str, spec: dict | None):
        self.target = target
        self.placement = placement
        self.revision = revision
        self.handle = handle
        self.spec = spec
        self.events: list[dict[str, Any]] = []
        # Seconds until a container with no health check has run its grace and counts as
        # healthy (None: none is waiting so): no event marks that moment, so a wait ends by it.
        self.due: float | None = None

    def take(self) -> Observation:
        found = self.target.replicas(self.placement)
        mine = [r for r in found if self.revision and r.revision == self.revision]
        others = [r for r in found if r not in mine]
        spec = self.spec or next((r.spec for r in mine if r.spec), None)
        if self.revision and spec is None:
            return Observation(
                Progress.FAILED,
                running=0,
                reason=f"no container of revision {self.revision} is left on "
                f"{self.placement.cluster.name} to take its image and config from",
            )
        config = spec["config"] if spec else None
        wanted = config["replicas"] if config else 0

        for replica in sorted(mine, key=lambda r: r.index):
            failed = replica.failure()
            if failed:
                return self._failed(replica, *failed, mine=mine, wanted=wanted)

        for replica in mine:
            if replica.status == "created":  # made by a worker that died before starting it
                with self.target.engine(f"start {replica.name}"):
                    replica.container.start()
        extra = [r for r in mine if not 1 <= r.index <= wanted]
        mine = [r for r in mine if r not in extra]
        healthy = [r for r in mine if r.healthy(config["grace"])] if config else []
        graced = [
            r.grace_left(config["grace"])
            for r in mine
            if config and r.status == "running" and not r.health and r not in healthy
        ]
        self.due = max(0.0, min(graced)) if graced else None
        self.events += [
            {"batch": r.batch, "containers": [r.name], "event": "healthy"} for r in healthy
        ]

        serving = [r for r in others if r.serving()]
        self._remove([r for r in others if r not in serving] + extra, graceful=False)
        least = math.ceil(wanted * config["min_healthy"] / 100) if config else 0
        retire = sorted(serving, key=lambda r: -r.index)[
            : max(0, len(healthy) + len(serving) - least)
        ]
        if retire:
            self._remove(retire, graceful=True)
            self.events.append(
                {
                    "batch": max((r.batch for r in healthy), default=0),
                    "containers": sorted(r.name for r in retire),
                    "event": "replaced",
                }
            )

        made = []
        have = {r.index for r in mine}
        missing = [i for i in range(1, wanted + 1) if i not in have]
        if missing:
            # At least one more than must stay healthy, so a replace always moves.
            most = max(wanted * config["max_surge"] // 100, least + 1)
            room = max(0, most - (len(mine) + len(serving) - len(retire)))
            batch = max((r.batch for r in mine), default=0) + 1
            began = time.time()
            for index in missing[:room]:
                if made and self._batch_failing(began):
                    break  # no more of a batch that is dying: the next step fails it
                made.append(self._create(index, batch, spec))
            if made:
                self.events.append({"batch": batch, "containers": made, "event": "started"})

        out = len(serving) == len(retire) and len(healthy) == wanted and not missing
        return Observation(
            Progress.OUT if out else Progress.PROGRESSING,
            running=sum(r.status == "running" for r in mine) + len(made),
            desired=wanted,
            events=tuple(self.events),
        )

    # ------------------------------------------------------------------------ acts

    def _failed(self, replica: Replica, event: str, words: str, *, mine, wanted) -> Observation:
        exit_code = None if event == "unhealthy" else replica.state.get("ExitCode")
        self.events.append(
            {"batch": replica.batch, "containers": [replica.name], "event": event}
            | ({"exit_code": exit_code} if exit_code is not None else {})
        )
        return Observation(
            Progress.FAILED,
            running=sum(r.status == "running" for r in mine),
            desired=wanted,
            reason=f"{replica.name}: {words}{self._last_lines(replica, event)}",
            events=tuple(self.events),
        )

    def _last_lines(self, replica: Replica, event: str) -> str:
        said = []
        if event == "unhealthy":
            checks = (replica.state.get("Health") or {}).get("Log") or []
            if checks:
                said.append(f"the last check said: {checks[-1].get('Output', '').strip()!r}")
        try:
            with self.target.engine(f"read the log of {replica.name}"):
                log = replica.container.logs(stdout=True, stderr=True, tail=LOG_LINES)
        except Exception:  # noqa: BLE001 - the failure is reported without its log
            log = b""
        lines = [line for line in log.decode(errors="replace").splitlines() if line.strip()]
        if lines:
            said.append("its last lines: " + " | ".join(lines)[-LOG_CHARS:])
        return ("; " + "; ".join(said)) if said else ""

    def _batch_failing(self, since: float) -> bool:
        """Has a container of this batch died or been OOM-killed already?"""
        watched = {str(self.placement.pk): self.revision}
        with self.target.engine("read the events"):
            return docker_events.died(self.target.client, watched, since)

    def _create(self, index: int, batch: int, spec: dict[str, Any]) -> str:
        name = container_name(self.placement, self.revision, index)
        service = self.placement.service
        config = spec["config"]
        options: dict[str, Any] = {
            "name": name,
            "command": config["command"],
            "environment": config["env"],
            "network_mode": config["network"],
            "mem_limit": config["memory"],
            "memswap_limit": config["memory"],  # no swap: the limit is hard
            "labels": {
                APPLICATION: service.application.slug,
                SERVICE: service.name,
                PLACEMENT: str(self.placement.pk),
                REVISION: self.revision,
                START: self.handle,
                REPLICA: str(index),
                BATCH: str(batch),
                SPEC: canonical(spec),
            },
            "detach": True,
        }
        if config["healthcheck"]:
            options["healthcheck"] = healthcheck_for_engine(config["healthcheck"])
        if config["ports"]:
            options["ports"] = config["ports"]
        engine = self.target.client
        with self.target.engine(f"create {name}"):
            try:
                container = engine.containers.create(spec["image"], **options)
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
                container = engine.containers.get(name)  # a retried create: adopted
            if container.status == "created":
                container.start()
        return name

    def _remove(self, replicas: list[Replica], *, graceful: bool) -> None:
        """Stop (gracefully: the stop signal to all at once, each its stop_timeout) and remove."""
        if graceful:
            began = time.monotonic()
            for replica in replicas:
                signal = replica.container.attrs.get("Config", {}).get("StopSignal") or "SIGTERM"
                self._quietly(replica, "signal", lambda c, s=signal: c.kill(signal=s))
            for replica in replicas:
                allowed = ((replica.spec or {}).get("config") or {}).get("stop_timeout", 10)
                left = max(0, math.ceil(allowed - (time.monotonic() - began)))
                self._quietly(replica, "stop", lambda c, t=left: c.stop(timeout=t))
        for replica in replicas:
            self._quietly(replica, "remove", lambda c: c.remove(force=True))

    def _quietly(self, replica: Replica, verb: str, act) -> None:
        """Act on a container; one already gone (or not running, for a signal) is fine."""
        with self.target.engine(f"{verb} {replica.name}"):
            try:
                act(replica.container)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code != 409:
                    raise
