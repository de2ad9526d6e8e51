"""What a Docker placement's rollout did, batch by batch, as the deploy page and the API say it.

The Docker target (clusters/targets/docker_replace.py) reports each step's events, which the
rollout engine keeps on the rollout row's detail["events"]: dicts of {batch, containers,
event, exit_code}. The detail is JSON a target wrote and a person may have edited, so every
shape is read defensively: what is not a list of such dicts is skipped, never a 500.

Per batch, events of one kind are merged ("healthy" comes once per container), in the order
first seen: "batch 1: started fc-…-1, fc-…-2 · healthy · replaced the old ones".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The words of each event the target reports; an event not listed is shown by its own name.
WORDS = {
    "started": "started",
    "healthy": "healthy",
    "replaced": "replaced the old ones",
    "oom_killed": "OOM-killed",
    "exited": "exited",
    "unhealthy": "unhealthy",
}
FAILURES = {"oom_killed", "exited", "unhealthy"}

# The rollout part of the deploy page is sent again on every live refresh: a runaway detail
# must not make it huge.
MAX_EVENTS = 200
MAX_CONTAINERS = 20
MAX_TEXT = 120


@dataclass
class Happening:
    event: str
    containers: list[str] = field(default_factory=list)
    exit_code: int | None = None

    @property
    def failed(self) -> bool:
        return self.event in FAILURES

    @property
    def words(self) -> str:
        said = WORDS.get(self.event, self.event)
        if self.exit_code is not None:
            said += f" (exit {self.exit_code})"
        return said

    def as_json(self) -> dict[str, Any]:
        return {"event": self.event, "containers": self.containers, "exit_code": self.exit_code}


@dataclass
class Batch:
    number: int | None  # None: the event named no batch the page can read
    happenings: list[Happening] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(h.failed for h in self.happenings)

    def as_json(self) -> dict[str, Any]:
        return {"batch": self.number, "events": [h.as_json() for h in self.happenings]}


def batches_of(detail: Any) -> list[Batch]:
    """The batches of a rollout row's detail, in the order first seen; [] when there are none."""
    events = detail.get("events") if isinstance(detail, dict) else None
    if not isinstance(events, list):
        return []
    batches: dict[int | None, Batch] = {}
    for event in events[:MAX_EVENTS]:
        if not isinstance(event, dict) or not isinstance(event.get("event"), str):
            continue
        name = _text(event["event"])
        if not name:
            continue
        number = _integer(event.get("batch"))
        exit_code = _integer(event.get("exit_code"))
        batch = batches.setdefault(number, Batch(number))
        happening = next(
            (h for h in batch.happenings if (h.event, h.exit_code) == (name, exit_code)), None
        )
        if happening is None:
            happening = Happening(name, exit_code=exit_code)
            batch.happenings.append(happening)
        for container in _containers(event.get("containers")):
            if container not in happening.containers and len(happening.containers) < MAX_CONTAINERS:
                happening.containers.append(container)
    return list(batches.values())


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):  # JSON true is not a batch number
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def _containers(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [_text(v) for v in value if isinstance(v, str) and v.strip()]


def _text(value: str) -> str:
    value = value.strip()
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
