"""The memory guard: what a new revision must promise about memory before a rollout touches
anything, the same rules for every target (DESIGN.md, "Cluster health").

Loose memory settings let one rogue process eat a host's memory until the host dies, and then
the scheduler places it on the next host. So, before any placement starts:

* every container has a hard memory limit (ECS: the container's `memory`, or the task's, which
  caps all of its containers; Docker: the placement's `memory`);
* a soft reservation, where there is one (ECS's `memoryReservation`), is not above the hard
  limit (ECS refuses such a definition only at registration, after earlier phases went out);
* the placement's desired instances fit the memory its hosts have left.

These functions only judge; the targets gather the numbers (clusters/targets: ecs.py,
docker.py) and the rollout engine decides, by the application's `memory_guard` setting,
whether a problem fails the deploy or is a warning on its timeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ContainerMemory:
    """One container of a revision, in MiB; None where it sets nothing."""

    name: str
    hard: int | None
    soft: int | None = None


def no_limit(where: str, container: str, how: str) -> str:
    """The words for a container with no hard memory limit, the same on every target."""
    return (
        f"{where}: container {container} has no hard memory limit, so one runaway process "
        f"could take its host down: {how}"
    )


def container_problems(where: str, containers: Sequence[ContainerMemory], how: str) -> list[str]:
    """What is wrong with the containers' memory settings ([] when nothing is); `how` says
    where the hard limit is set ("set memory on the container in the task definition")."""
    problems = []
    for container in containers:
        if not container.hard:
            problems.append(no_limit(where, container.name, how))
        elif container.soft and container.soft > container.hard:
            problems.append(
                f"{where}: container {container.name} reserves {container.soft} MiB "
                f"(memoryReservation), more than its hard limit of {container.hard} MiB"
            )
    return problems


def fit_problem(
    where: str, *, desired: int, each: int, left: Mapping[str, int], hosts_word: str
) -> str:
    """Why `desired` instances of `each` MiB do not fit the memory left on the hosts ({host:
    MiB left}); '' when they fit. An instance runs on one host, so what fits is counted host
    by host, not from the sum."""
    if desired <= 0 or each <= 0 or not left:
        return ""
    room = sum(mib // each for mib in left.values())
    if room >= desired:
        return ""
    shown = ", ".join(f"{host} {mib} MiB" for host, mib in sorted(left.items()))
    return (
        f"{where}: {desired} x {each} MiB do not fit the memory left on its {hosts_word} "
        f"({shown}): room for {room}"
    )


def task_memory(containers: Sequence[ContainerMemory], task_hard: int | None) -> int:
    """What one task asks of a host, in MiB: the task's memory if it sets one, else each
    container's reservation (or its hard limit where it reserves nothing)."""
    if task_hard:
        return task_hard
    return sum(c.soft or c.hard or 0 for c in containers)
