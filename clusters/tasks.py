"""The cluster health checks, run by beat (fatcontroller/settings.py: CELERY_BEAT_SCHEDULE).

Beat sends one fan-out task per check; it sends one task per cluster, so one slow cluster
delays none. A check that cannot look (TargetError) is logged: what it saw before stands and
the next run looks again.
"""

import logging
from collections.abc import Callable

from celery import shared_task

from clusters.health import notices, watch
from clusters.models import Cluster, ClusterKind
from clusters.targets.base import TargetError
from deploys.notify import WebhookUnavailable

log = logging.getLogger(__name__)

WATCHED = (ClusterKind.ECS, ClusterKind.DOCKER)


def _each_cluster(task) -> None:
    for cluster_id in Cluster.objects.filter(kind__in=WATCHED).values_list("pk", flat=True):
        task.delay(cluster_id)


def _look(cluster_id: int, check: Callable[[Cluster], None], what: str) -> None:
    cluster = Cluster.objects.filter(pk=cluster_id, kind__in=WATCHED).first()
    if cluster is None:
        return
    try:
        check(cluster)
    except TargetError as exc:
        log.warning("the %s of cluster %s could not look: %s", what, cluster.name, exc)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_clusters() -> None:
    _each_cluster(watch_cluster)


@shared_task(soft_time_limit=60, time_limit=90)
def watch_cluster(cluster_id: int) -> None:
    """Every check of the cluster's kind (clusters/health/watch.py)."""
    _look(cluster_id, watch.watch, "watch")


@shared_task(soft_time_limit=60, time_limit=90)
def watch_crash_loops() -> None:
    _each_cluster(check_crash_loops)


@shared_task(soft_time_limit=60, time_limit=90)
def check_crash_loops(cluster_id: int) -> None:
    """The crash loop check of one cluster (clusters/health/crash_loops.py)."""
    _look(cluster_id, watch.watch_crash_loops, "crash loop check")


# A cluster report told to one application's chat webhook (clusters/health/notices.py): its
# arguments are the report's id and the slug, never the URL; retries ride out a 429 or 5xx.
@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(WebhookUnavailable,),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=60,
)
def post_report_notice(self, report_id: int, slug: str, opened: bool) -> None:
    notices.post_notice(report_id, slug, opened, last_try=self.request.retries >= self.max_retries)
