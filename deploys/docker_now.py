"""What the Docker engines say now of an application page's Docker placements.

The rest of the page is read from the database; only a Docker placement's containers are
asked of its engine (clusters.targets: target.containers), because there is no other way to
see them. An engine that does not answer must not hang the page or cost it other rows: every
placement is asked at once, in threads, each on a client that gives up after
FC_DOCKER_PAGE_TIMEOUT seconds, and the page waits no longer than that (plus a margin) for
all of them; a placement whose answer is not back says so in its row.

The threads touch no database: a placement comes with its cluster loaded, and the target
reads only its pk and its cluster's address.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings

from clusters import targets
from clusters.models import Placement, PlacementKind
from lib.urls import redact_text

log = logging.getLogger(__name__)

MAX_THREADS = 8
# A client's timeout is per socket operation and a listing is two (the API version, then the
# list): the page's own wait covers both, and a little more for the threads to start.
WAIT_MARGIN = 0.5


@dataclass
class EngineAnswer:
    host: str  # the cluster's name: "box-1"
    containers: list = field(default_factory=list)  # clusters.targets.docker.Container
    problem: str = ""  # why there are no containers to show: the engine did not answer

    @property
    def revisions(self) -> list[str]:
        """The revisions the running containers are on, most replicas first."""
        counted: dict[str, int] = {}
        for container in self.containers:
            if container.state == "running":
                counted[container.revision] = counted.get(container.revision, 0) + 1
        return sorted(counted, key=lambda revision: -counted[revision])


def docker_now(placements: list[Placement]) -> dict[int, EngineAnswer]:
    """Per Docker placement's pk, what its engine says now, or why it said nothing."""
    asked = [p for p in placements if p.kind == PlacementKind.DOCKER and p.retired_at is None]
    if not asked:
        return {}
    timeout = settings.FC_DOCKER_PAGE_TIMEOUT
    pool = ThreadPoolExecutor(max_workers=min(MAX_THREADS, len(asked)))
    try:
        futures = {p.pk: pool.submit(_ask, p, timeout) for p in asked}
        wait(futures.values(), timeout=2 * timeout + WAIT_MARGIN)
    finally:
        # Never wait for a thread still stuck on an engine: it gives up on its own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    answers = {}
    for placement in asked:
        future = futures[placement.pk]
        host = placement.cluster.name if placement.cluster else "?"
        if future.done() and not future.cancelled():
            answers[placement.pk] = future.result()
        else:
            answers[placement.pk] = EngineAnswer(
                host, problem=f"no answer within {2 * timeout + WAIT_MARGIN:g} seconds"
            )
    return answers


def _ask(placement: Placement, timeout: float) -> EngineAnswer:
    host = placement.cluster.name if placement.cluster else "?"
    try:
        target = targets.target_for(placement)
        return EngineAnswer(host, containers=target.containers(placement, timeout=timeout))
    except Exception as exc:  # noqa: BLE001 - any failure is the row's to say, not a 500
        # Redacted like every URL shown: an engine's error may quote the address it used.
        said = redact_text(str(exc))[:300]
        log.info("the Docker host %s did not answer for placement %s: %s", host, placement.pk, said)
        return EngineAnswer(host, problem=said or type(exc).__name__)
