"""What the cluster checks share about their reports (clusters.models.ClusterReport): the open
ones of a kind, opening one and closing one with why (each told to the affected applications'
chat webhooks once committed: notices.py), and what a check did, for its log line and the
tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from clusters.models import Cluster, ClusterReport


@dataclass
class Outcome:
    """What one check did, by subject (an instance, or the cluster's name)."""

    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    drained: list[str] = field(default_factory=list)
    undrained: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.opened or self.closed or self.drained or self.undrained)


def open_reports(cluster: Cluster, kind: str) -> dict[str, ClusterReport]:
    """The cluster's open reports of `kind`, by subject (one each: the database says so)."""
    return {r.subject: r for r in cluster.reports.filter(kind=kind, closed_at__isnull=True)}


def open_report(
    cluster: Cluster,
    kind: str,
    now: datetime,
    message: str,
    outcome: Outcome,
    *,
    subject: str = "",
    detail: dict | None = None,
) -> ClusterReport:
    """Open a report (the caller holds the cluster's row, so it is the only one open)."""
    report = ClusterReport.objects.create(
        cluster=cluster,
        kind=kind,
        subject=subject,
        opened_at=now,
        message=message,
        detail=detail or {},
    )
    outcome.opened.append(subject or cluster.name)
    _tell(report, opened=True)
    return report


def close(report: ClusterReport, now: datetime, why: str, outcome: Outcome) -> None:
    report.closed_at, report.closed_why = now, why
    report.save(update_fields=["closed_at", "closed_why"])
    outcome.closed.append(report.subject or report.cluster.name)
    _tell(report, opened=False)


def _tell(report: ClusterReport, *, opened: bool) -> None:
    """The chat notices (notices.py), once the check's transaction has committed."""
    from . import notices  # the notices know deploys' webhooks; the checks need not load them

    report_id, cluster_id = report.pk, report.cluster_id
    transaction.on_commit(lambda: notices.report_changed(report_id, cluster_id, opened))
