"""The reserved memory check: every container instance keeps some memory from ECS for the
agent and the Docker daemon (ECS_RESERVED_MEMORY), or under memory pressure the daemon itself
stops answering and the host is lost with every task on it.

What an instance reserves is its instance type's memory (DescribeInstanceTypes) less the
memory it registered with ECS. Less than the cluster's reserved_memory_minimum (256 MiB by
default) opens a report naming the numbers and the setting to change; enough closes it. An
instance whose type or registered memory is not known is left as it was.

On a Docker host the same is the host's memory (the engine's MemTotal) less every running
container's hard limit, ours or not: less than the minimum left, or a container with no hard
limit at all (it may take everything), opens a report on the host naming the numbers and the
containers; enough left and every container limited closes it.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster, ContainerInstanceState, ReportKind
from clusters.targets import ecs_instances
from clusters.targets.docker import MIB, HostMemory

from .reports import Outcome, close, open_report, open_reports


def check_reserved_memory(
    cluster: Cluster, described: list[ecs_instances.Instance], *, now: datetime | None = None
) -> Outcome:
    memory_of = ecs_instances.instance_type_memory(
        cluster.region, {i.instance_type for i in described}
    )
    now = now or timezone.now()
    checked = Outcome()
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        minimum = cluster.reserved_memory_minimum
        still_open = open_reports(cluster, ReportKind.RESERVED_MEMORY)
        _keep_type_memory(cluster, described, memory_of)
        for instance in described:
            total = memory_of.get(instance.instance_type)
            report = still_open.pop(instance.name, None)
            if total is None or instance.registered_memory is None:
                continue  # not known: as it was
            reserved = total - instance.registered_memory
            if reserved < minimum and report is None:
                open_report(
                    cluster,
                    ReportKind.RESERVED_MEMORY,
                    now,
                    f"{instance.name} ({instance.instance_type}, {total} MiB) registers "
                    f"{instance.registered_memory} MiB with ECS, so it keeps {reserved} MiB for "
                    f"the ECS agent and the Docker daemon, less than {minimum} MiB: set "
                    f"ECS_RESERVED_MEMORY={minimum} (or more) in /etc/ecs/ecs.config and "
                    "restart the agent",
                    checked,
                    subject=instance.name,
                    detail={"total": total, "registered": instance.registered_memory},
                )
            elif reserved >= minimum and report is not None:
                close(report, now, f"it keeps {reserved} MiB now", checked)
        for report in still_open.values():
            close(report, now, "the instance is no longer in the cluster", checked)
    return checked


def _keep_type_memory(cluster: Cluster, described, memory_of: dict[str, int]) -> None:
    """What the cluster page shows as reserved (the agent watch stored the other figures)."""
    types = {i.arn: memory_of.get(i.instance_type) for i in described}
    states = list(cluster.instances.filter(arn__in=types))
    for state in states:
        state.type_memory = types[state.arn]
    ContainerInstanceState.objects.bulk_update(states, ["type_memory"])


def check_docker_reserved_memory(
    cluster: Cluster, memory: HostMemory, *, now: datetime | None = None
) -> Outcome:
    now = now or timezone.now()
    checked = Outcome()
    if not memory.total:
        return checked  # the engine did not say: as it was
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        minimum = cluster.reserved_memory_minimum
        report = open_reports(cluster, ReportKind.RESERVED_MEMORY).pop(cluster.name, None)
        total, limited, left = (memory.total // MIB, memory.limited // MIB, memory.left // MIB)
        unlimited = memory.unlimited
        short = left < minimum or bool(unlimited)
        if short and report is None:
            open_report(
                cluster,
                ReportKind.RESERVED_MEMORY,
                now,
                _docker_message(cluster.name, total, limited, left, minimum, unlimited),
                checked,
                subject=cluster.name,
                detail={
                    "total": total,
                    "limited": limited,
                    "left": left,
                    "minimum": minimum,
                    "unlimited": unlimited,
                },
            )
        elif not short and report is not None:
            close(report, now, f"the hard limits leave {left} MiB now", checked)
    return checked


def _docker_message(
    host: str, total: int, limited: int, left: int, minimum: int, unlimited: list[str]
) -> str:
    said = [
        f"{host} has {total} MiB; its running containers' hard limits add up to {limited} MiB, "
        f"leaving {left} MiB for the Docker daemon and the system"
    ]
    if left < minimum:
        said.append(
            f"less than {minimum} MiB: lower the services' memory in their config files or "
            "move some to another host"
        )
    if unlimited:
        shown = ", ".join(unlimited[:10]) + (", ..." if len(unlimited) > 10 else "")
        said.append(
            f"{len(unlimited)} running container{'s' if len(unlimited) != 1 else ''} "
            f"{'have' if len(unlimited) != 1 else 'has'} no hard memory limit and may take all "
            f"of it ({shown}): give each one (docker run --memory)"
        )
    return "; ".join(said)
