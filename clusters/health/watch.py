"""One look at one cluster by every check that applies to its kind, on one reading of it.

Beat's clusters.tasks.watch_clusters sends one clusters.tasks.watch_cluster per cluster; each
comes here. A check that cannot look (TargetError) leaves what it saw before standing and
the next run looks again.
"""

from __future__ import annotations

import logging

from clusters.models import Cluster, ClusterKind
from clusters.targets import docker, ecs_instances

from . import agents, crash_loops, reserved_memory

log = logging.getLogger(__name__)


def watch(cluster: Cluster) -> None:
    if cluster.kind == ClusterKind.ECS:
        watch_ecs(cluster)
    elif cluster.kind == ClusterKind.DOCKER:
        watch_docker(cluster)


def watch_ecs(cluster: Cluster) -> None:
    """The agent watch and the reserved memory check, on one reading of the instances."""
    described = ecs_instances.container_instances(cluster.region, cluster.name)
    _said(cluster, "agent watch", agents.watch_agents(cluster, described))
    _said(
        cluster, "reserved memory check", reserved_memory.check_reserved_memory(cluster, described)
    )


def watch_docker(cluster: Cluster) -> None:
    """The reserved memory check of a Docker host (its crash loops: watch_crash_loops)."""
    memory = docker.target_for_host(cluster.docker_host).host_memory()
    _said(
        cluster,
        "reserved memory check",
        reserved_memory.check_docker_reserved_memory(cluster, memory),
    )


def _said(cluster: Cluster, check: str, outcome) -> None:
    if outcome:
        log.info("%s of %s: %s", check, cluster.name, outcome)


def watch_crash_loops(cluster: Cluster) -> None:
    """The crash loop check: run more often than the others (FC_CRASH_LOOP_WATCH_SECONDS),
    since a loop must be stopped before it reaches the next host."""
    _said(
        cluster,
        "crash loop check",
        crash_loops.check_crash_loops(cluster, crash_loops.kills_on(cluster)),
    )
