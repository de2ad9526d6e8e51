"""The cluster health checks, run by beat (fatcontroller/settings.py: CELERY_BEAT_SCHEDULE)."""

import logging

from celery import shared_task

from clusters.health import watch
from clusters.models import Cluster, ClusterKind
from clusters.targets.base import TargetError

log = logging.getLogger(__name__)

WATCHED = (ClusterKind.ECS, ClusterKind.DOCKER)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_clusters() -> None:
    """One watch per cluster, each its own task, so one slow cluster delays none."""
    for cluster_id in Cluster.objects.filter(kind__in=WATCHED).values_list("pk", flat=True):
        watch_cluster.delay(cluster_id)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_cluster(cluster_id: int) -> None:
    """Every check of the cluster's kind (clusters/health/watch.py)."""
    cluster = Cluster.objects.filter(pk=cluster_id, kind__in=WATCHED).first()
    if cluster is None:
        return
    try:
        watch.watch(cluster)
    except TargetError as exc:
        # The next run looks again; what was seen before stands meanwhile.
        log.warning("the watch of cluster %s could not look: %s", cluster.name, exc)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_crash_loops() -> None:
    """One crash loop check per cluster, each its own task."""
    for cluster_id in Cluster.objects.filter(kind__in=WATCHED).values_list("pk", flat=True):
        check_crash_loops.delay(cluster_id)


@shared_task(soft_time_limit=60, time_limit=90)
def check_crash_loops(cluster_id: int) -> None:
    """The crash loop check of one cluster (clusters/health/crash_loops.py)."""
    cluster = Cluster.objects.filter(pk=cluster_id, kind__in=WATCHED).first()
    if cluster is None:
        return
    try:
        watch.watch_crash_loops(cluster)
    except TargetError as exc:
        log.warning("the crash loop check of cluster %s could not look: %s", cluster.name, exc)
