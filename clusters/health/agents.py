"""The agent watch: ECS agents that disconnected and did not come back.

An instance whose agent is disconnected takes no new work, silently: ECS keeps it ACTIVE and
places nothing on it. Short disconnects are normal, so ECS's agentConnected is remembered
with the moment it last changed (ContainerInstanceState.since: ECS does not say), and only an
agent disconnected for FC_AGENT_GRACE_SECONDS is reported (a ClusterReport). Where the cluster
allows it (Cluster.drain_disconnected) the instance is then set to DRAINING, so its service
tasks move to instances that work; a reconnect closes the report and sets an instance
Fat Controller drained back to ACTIVE. A cluster whose every instance is disconnected past
the grace is never drained to nothing: it is reported as a whole (and deploys to it wait).

A check holds its cluster's row locked from reading the instances' states to writing them,
so checks that race (beat sending one while another runs) take turns, and each report is
opened once and closed once; the database's one_open_report_per_subject keeps that true
whatever else writes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster, ClusterReport, ContainerInstanceState, ReportKind
from clusters.targets import ecs_instances

from .reports import Outcome, close, open_report, open_reports

DRAINING, ACTIVE = "DRAINING", "ACTIVE"


def watch_agents(
    cluster: Cluster,
    described: list[ecs_instances.Instance] | None = None,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Look at the cluster's container instances once (as `described`, or read now); report,
    drain and undo as above."""
    if described is None:
        described = ecs_instances.container_instances(cluster.region, cluster.name)
    now = now or timezone.now()
    grace = timedelta(seconds=settings.FC_AGENT_GRACE_SECONDS)
    watched = Outcome()
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        states = _remember(cluster, described, now)
        gone = [s for s in states if not s.agent_connected and now - s.since >= grace]
        everyone = bool(states) and len(gone) == len(states)
        still_open = open_reports(cluster, ReportKind.AGENT_DISCONNECTED)
        for state in gone:
            report = still_open.pop(state.name, None) or _open(cluster, state, now, watched)
            if cluster.drain_disconnected and not everyone and not report.drained:
                if state.status == ACTIVE:
                    ecs_instances.set_status(cluster.region, cluster.name, [state.arn], DRAINING)
                    watched.drained.append(state.name)
                    report.drained = True
                    report.save(update_fields=["drained"])
                    state.status = DRAINING  # as ECS says now: the page shows it at once
                    state.save(update_fields=["status"])
        for report in still_open.values():  # reconnected, or no longer there
            _close(cluster, report, states, now, watched)
        _whole_cluster(cluster, everyone, len(states), now, watched)
    return watched


# What the agent watch copies from ECS onto each instance's state, as ECS said it.
COPIED = (
    "ec2_instance_id",
    "status",
    "agent_connected",
    "instance_type",
    "registered_memory",
    "remaining_memory",
    "registered_cpu",
    "remaining_cpu",
    "running_tasks",
)


def _remember(cluster: Cluster, described, now: datetime) -> list[ContainerInstanceState]:
    """Store what ECS said of each instance (one insert and one update for them all);
    `since` moves only when the agent's state does."""
    known = {s.arn: s for s in cluster.instances.all()}
    states, new = [], []
    for instance in described:
        state = known.pop(instance.arn, None)
        if state is None:
            state = ContainerInstanceState(cluster=cluster, arn=instance.arn, since=now)
            new.append(state)
        elif state.agent_connected != instance.agent_connected:
            state.since = now
        for figure in COPIED:
            setattr(state, figure, getattr(instance, figure))
        state.seen_at = now
        states.append(state)
    ContainerInstanceState.objects.bulk_create(new)
    made = {id(state) for state in new}
    ContainerInstanceState.objects.bulk_update(
        [s for s in states if id(s) not in made], [*COPIED, "since", "seen_at"]
    )
    ContainerInstanceState.objects.filter(pk__in=[s.pk for s in known.values()]).delete()
    return states


def _open(cluster: Cluster, state: ContainerInstanceState, now: datetime, watched) -> ClusterReport:
    minutes = int((now - state.since).total_seconds() // 60)
    return open_report(
        cluster,
        ReportKind.AGENT_DISCONNECTED,
        now,
        f"the ECS agent on {state.name} has been disconnected for {minutes} min "
        f"(since {state.since:%Y-%m-%d %H:%M:%S} UTC): the instance takes no new tasks"
        + ("; it is drained so its tasks move" if cluster.drain_disconnected else ""),
        watched,
        subject=state.name,
        detail={"arn": state.arn, "since": state.since.isoformat()},
    )


def _close(cluster, report: ClusterReport, states, now: datetime, watched) -> None:
    state = next((s for s in states if s.name == report.subject), None)
    if report.drained and state is not None and state.status == DRAINING:
        ecs_instances.set_status(cluster.region, cluster.name, [state.arn], ACTIVE)
        watched.undrained.append(report.subject)
        state.status = ACTIVE
        state.save(update_fields=["status"])
    why = (
        "the agent reconnected" + ("; set back to ACTIVE" if report.drained else "")
        if state is not None
        else "the instance is no longer in the cluster"
    )
    close(report, now, why, watched)


def _whole_cluster(cluster, everyone: bool, count: int, now: datetime, watched) -> None:
    """The report that every agent is gone: nothing is drained, and deploys to it wait."""
    report = open_reports(cluster, ReportKind.ALL_AGENTS_DISCONNECTED).get("")
    if everyone and report is None:
        open_report(
            cluster,
            ReportKind.ALL_AGENTS_DISCONNECTED,
            now,
            f"every ECS agent of cluster {cluster.name} ({count} instance"
            f"{'s' if count != 1 else ''}) is disconnected: nothing is drained (there is "
            "nowhere for the tasks to go) and deploys to it wait until one reconnects",
            watched,
        )
    elif not everyone and report is not None:
        why = "an agent reconnected" if count else "the cluster has no instances"
        close(report, now, why, watched)


def holding(clusters) -> ClusterReport | None:
    """The open whole-cluster report that holds deploys to one of these clusters, if any."""
    return (
        ClusterReport.objects.filter(
            cluster__in=clusters, kind=ReportKind.ALL_AGENTS_DISCONNECTED, closed_at__isnull=True
        )
        .select_related("cluster")
        .first()
    )
