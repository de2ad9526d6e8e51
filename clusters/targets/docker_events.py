"""Waiting on a Docker engine's own account of its containers, rather than polling it.

The engine streams events as they happen (GET /events): a container of the watched revision
that dies, is OOM-killed or changes health is something a rolling replace must act on at
once, and its event is how the target hears of it in milliseconds rather than at the
rollout's next poll. An event is only a nudge: what changed is read again from the
containers' labels and state (docker_replace.Step), so an event missed or seen twice changes
nothing but how soon the step is taken.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from .docker_replicas import PLACEMENT, REVISION, stamp

# What a replace waits for. Not "start" or "destroy": the step makes those itself. Not the
# exec events a health check makes every interval: its outcome comes as health_status.
WAKING = ("die", "oom", "health_status")


def changed(client, watched: Mapping[str, str], since: float, seconds: float) -> bool | None:
    """Wait up to `seconds` for an event of a container of a watched placement and revision
    ({placement id: revision}) from `since` (this machine's clock) on.

    True at the first such event; False when the wait ran out with none; None when the
    stream ended early (the engine closed it, or its clock is ahead of ours so `until` had
    passed for it already): the caller then polls as it would have anyway.
    """
    if seconds <= 0:
        return False
    until = time.time() + seconds
    if _first(client, watched, since, until):
        return True
    return False if time.time() >= until - 0.05 else None


def died(client, watched: Mapping[str, str], since: float) -> bool:
    """Has a container of a watched placement and revision died or been OOM-killed since
    `since`? Asked without waiting: the engine answers from its record."""
    return _first(client, watched, since, time.time(), ("die", "oom"))


def oom_kills(client, since: float, until: float) -> list[dict[str, str]]:
    """The labelled containers the kernel OOM-killed between `since` and `until`, as the
    engine recorded them (it keeps its recent events): each the container's labels with its
    name ("name") and when ("at", Unix seconds). Answered at once: `until` is not ahead.

    An engine says "oom" where it hears of it from the kernel, but not every one does (on
    cgroup v2 hosts it often only says "die" with exit code 137). So a container that died
    with 137, SIGKILL's code, counts too, unless somebody killed it: a stop or kill through
    the engine is a "kill" event of its own first.
    """
    stream = client.events(
        since=stamp(since),
        until=stamp(min(until, time.time())),
        decode=True,
        filters={"type": "container", "label": PLACEMENT, "event": ["oom", "kill", "die"]},
    )
    killed_on_purpose: set[str] = set()
    kills: dict[str, dict[str, str]] = {}
    try:
        for event in stream:
            container, action = event.get("id", ""), event.get("Action") or event.get("status")
            attributes = dict((event.get("Actor") or {}).get("Attributes") or {})
            if action == "kill":
                killed_on_purpose.add(container)
                continue
            if action == "die" and (
                attributes.get("exitCode") != "137" or container in killed_on_purpose
            ):
                continue
            if action in ("oom", "die") and container not in kills:
                at = event.get("timeNano")
                attributes["at"] = str(at / 1e9 if at else event.get("time", until))
                attributes.pop("exitCode", None)
                kills[container] = attributes
    finally:
        stream.close()
    return list(kills.values())


def _first(client, watched, since: float, until: float, kinds=WAKING) -> bool:
    stream = client.events(
        since=stamp(since),
        until=stamp(until),
        decode=True,
        filters={"type": "container", "label": PLACEMENT, "event": list(kinds)},
    )
    try:
        for event in stream:
            attributes = (event.get("Actor") or {}).get("Attributes") or {}
            placement = attributes.get(PLACEMENT)
            if placement in watched and attributes.get(REVISION) == watched[placement]:
                return True
    finally:
        stream.close()
    return False
