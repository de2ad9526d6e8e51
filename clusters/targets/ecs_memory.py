"""The memory guard's numbers on ECS (clusters/health/memory_guard.py): the containers of the
revision a start would make, and the memory the cluster's container instances have left.

A start registers a revision that differs from the service's current task definition only in
one container's image, so the current definition's memory settings are the new revision's.
Only reads: DescribeServices, DescribeTaskDefinition, ListContainerInstances and
DescribeContainerInstances (a hundred a call). A service on Fargate, or a cluster with no
active container instance (capacity providers add them as needed), has no hosts to fit.
"""

from __future__ import annotations

from clusters.health.memory_guard import (
    ContainerMemory,
    container_problems,
    fit_problem,
    task_memory,
)


def memory_problems(target, placement) -> list[str]:
    """What the memory guard finds wrong with the placement's next revision ([]: nothing)."""
    from .ecs import _aws, revision_name  # here: ecs.py imports this module

    cluster, service = placement.cluster.name, placement.ecs_service_name
    where = target.name(placement)
    with _aws(f"read service {service} on {cluster}"):
        services = target.ecs.describe_services(cluster=cluster, services=[service])
    described = next(iter(services.get("services") or []), None)
    if not described or not described.get("taskDefinition"):
        return []  # the start says what is missing, in its own words
    arn = described["taskDefinition"]
    with _aws(f"read task definition {revision_name(arn)}"):
        definition = target.ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
    task_hard = _mib(definition.get("memory"))
    containers = [
        ContainerMemory(
            name=c.get("name", "?"),
            hard=_mib(c.get("memory")) or task_hard,
            soft=_mib(c.get("memoryReservation")),
        )
        for c in definition.get("containerDefinitions", [])
    ]
    how = f"set memory on it (or on the task) in task definition {revision_name(arn)}"
    problems = container_problems(where, containers, how)
    if problems or described.get("launchType") == "FARGATE":
        return problems
    left = _memory_left(target, cluster)
    fit = fit_problem(
        where,
        desired=described.get("desiredCount", 0),
        each=task_memory(containers, task_hard),
        left=left,
        hosts_word="container instances",
    )
    return [fit] if fit else []


def _memory_left(target, cluster: str) -> dict[str, int]:
    """MiB of memory left per active container instance, by its EC2 instance id."""
    from .ecs_instances import container_instances  # here: it imports ecs.py

    return {
        instance.name: instance.remaining_memory
        for instance in container_instances(target.region, cluster, status="ACTIVE")
        if instance.remaining_memory is not None
    }


def _mib(value) -> int | None:
    """A task definition's memory figure (an int, or a string for the task's) in MiB."""
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None
