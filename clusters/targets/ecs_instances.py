"""A cluster's container instances as ECS describes them, and setting their status.

ListContainerInstances (paginated) and DescribeContainerInstances (a hundred a call): what the
memory guard (ecs_memory.py) and the agent watch (clusters/health/agents.py) read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ecs import _aws, client

DESCRIBE_BATCH = 100


@dataclass(frozen=True)
class Instance:
    arn: str
    ec2_instance_id: str
    status: str  # ACTIVE, DRAINING, REGISTERING, ...
    agent_connected: bool
    registered_memory: int | None  # MiB
    remaining_memory: int | None
    instance_type: str
    registered_cpu: int | None = None  # CPU units (1024 a vCPU)
    remaining_cpu: int | None = None
    running_tasks: int = 0

    @property
    def name(self) -> str:
        return self.ec2_instance_id or self.arn.rsplit("/", 1)[-1]


def container_instances(region: str, cluster: str, *, status: str | None = None) -> list[Instance]:
    """Every container instance of the cluster (those of `status` only, if given)."""
    ecs = client("ecs", region)
    arns: list[str] = []
    with _aws(f"list the container instances of {cluster}"):
        pages = ecs.get_paginator("list_container_instances").paginate(
            cluster=cluster, **({"status": status} if status else {})
        )
        for page in pages:
            arns += page.get("containerInstanceArns", [])
    found = []
    for start in range(0, len(arns), DESCRIBE_BATCH):
        with _aws(f"read the container instances of {cluster}"):
            answer = ecs.describe_container_instances(
                cluster=cluster, containerInstances=arns[start : start + DESCRIBE_BATCH]
            )
        found += [_instance(described) for described in answer.get("containerInstances", [])]
    return found


def set_status(region: str, cluster: str, arns: list[str], status: str) -> None:
    """ACTIVE or DRAINING (ECS moves a draining instance's service tasks elsewhere)."""
    if not arns:
        return
    with _aws(f"set {len(arns)} container instance(s) of {cluster} to {status}"):
        client("ecs", region).update_container_instances_state(
            cluster=cluster, containerInstances=arns, status=status
        )


def instance_type_memory(region: str, types: set[str]) -> dict[str, int]:
    """MiB of memory of each EC2 instance type (DescribeInstanceTypes, a hundred a call)."""
    wanted = sorted(t for t in types if t)
    memory = {}
    for start in range(0, len(wanted), DESCRIBE_BATCH):
        with _aws("read the EC2 instance types"):
            answer = client("ec2", region).describe_instance_types(
                InstanceTypes=wanted[start : start + DESCRIBE_BATCH]
            )
        for described in answer.get("InstanceTypes", []):
            size = (described.get("MemoryInfo") or {}).get("SizeInMiB")
            if size:
                memory[described["InstanceType"]] = int(size)
    return memory


def _instance(described: dict) -> Instance:
    attributes = {a.get("name"): a.get("value") for a in described.get("attributes", [])}
    return Instance(
        arn=described["containerInstanceArn"],
        ec2_instance_id=described.get("ec2InstanceId", ""),
        status=described.get("status", ""),
        agent_connected=bool(described.get("agentConnected", True)),
        registered_memory=_resource(described.get("registeredResources"), "MEMORY"),
        remaining_memory=_resource(described.get("remainingResources"), "MEMORY"),
        instance_type=attributes.get("ecs.instance-type") or "",
        registered_cpu=_resource(described.get("registeredResources"), "CPU"),
        remaining_cpu=_resource(described.get("remainingResources"), "CPU"),
        running_tasks=int(described.get("runningTasksCount") or 0),
    )


def _resource(resources, name: str) -> int | None:
    found = next((r for r in resources or [] if r.get("name") == name), None)
    return None if found is None else int(found.get("integerValue", 0))
