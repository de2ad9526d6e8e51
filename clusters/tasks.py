"""The cluster health checks, run by beat (fatcontroller/settings.py: CELERY_BEAT_SCHEDULE)."""

import logging

from celery import shared_task

from clusters.health import agents, reserved_memory
from clusters.models import Cluster, ClusterKind
from clusters.targets import ecs_instances
from clusters.targets.base import TargetError

log = logging.getLogger(__name__)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_clusters() -> None:
    """One watch per ECS cluster, each its own task, so one slow cluster delays none."""
    for cluster_id in Cluster.objects.filter(kind=ClusterKind.ECS).values_list("pk", flat=True):
        watch_cluster.delay(cluster_id)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_cluster(cluster_id: int) -> None:
    """The agent watch and the reserved memory check, on one reading of the instances."""
    cluster = Cluster.objects.filter(pk=cluster_id, kind=ClusterKind.ECS).first()
    if cluster is None:
        return
    try:
        described = ecs_instances.container_instances(cluster.region, cluster.name)
        watched = agents.watch_agents(cluster, described)
        checked = reserved_memory.check_reserved_memory(cluster, described)
    except TargetError as exc:
        # The next run looks again; what was seen before stands meanwhile.
        log.warning("the watch of cluster %s could not look: %s", cluster.name, exc)
        return
    if watched:
        log.info("agent watch of %s: %s", cluster.name, watched)
    if checked:
        log.info("reserved memory check of %s: %s", cluster.name, checked)
