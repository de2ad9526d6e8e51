"""What the cluster page shows (/clusters/<name>/): the cluster's container instances as the
last watch saw them, its open reports first and the closed ones after, and the applications
that run there. Read from the database only: the page never waits on ECS."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count

from clusters.models import Cluster, ClusterReport, ContainerInstanceState

from .models import Application

CLOSED_SHOWN = 50


@dataclass
class ClusterPage:
    cluster: Cluster
    instances: list[ContainerInstanceState]
    open_reports: list[ClusterReport]
    closed_reports: list[ClusterReport]
    drained: set[str]  # instances Fat Controller drained, by name
    applications: list[Application]


def cluster_page(cluster: Cluster) -> ClusterPage:
    open_reports = list(cluster.reports.filter(closed_at__isnull=True).order_by("-opened_at"))
    return ClusterPage(
        cluster=cluster,
        instances=list(cluster.instances.all()),
        open_reports=open_reports,
        closed_reports=list(
            cluster.reports.filter(closed_at__isnull=False).order_by("-closed_at")[:CLOSED_SHOWN]
        ),
        drained={r.subject for r in open_reports if r.drained},
        applications=list(
            Application.objects.filter(services__placements__cluster=cluster)
            .distinct()
            .order_by("slug")
        ),
    )


def open_reports_by_application(app_ids) -> dict[int, list[tuple[str, int]]]:
    """Per application, (cluster name, open reports) of its clusters that have any: one
    query, for the dashboard's badges."""
    rows = (
        ClusterReport.objects.filter(
            closed_at__isnull=True, cluster__placements__service__application_id__in=app_ids
        )
        .values_list("cluster__placements__service__application_id", "cluster__name")
        # distinct: a cluster with several of the application's placements counts once
        .annotate(count=Count("pk", distinct=True))
        .order_by("cluster__name")
    )
    found: dict[int, list[tuple[str, int]]] = {}
    for app_id, cluster_name, count in rows:
        found.setdefault(app_id, []).append((cluster_name, count))
    return found
