"""Crash loops: one rogue process OOM-killed on host after host.

A process whose memory grows without a hard limit's stop takes a host down; the scheduler
then places it on the next host, which goes the same way. Tasks (or containers) of one
service and revision OOM-killed on two or more hosts within FC_CRASH_LOOP_WINDOW_SECONDS are
such a loop: reported (one ClusterReport per service, naming the revision and the hosts) and,
outside a rollout, stopped before it reaches another host as the application's crash_loop
setting says:

* restore (the default): the revision that ran before the looping one (the `revision_before`
  of the rollout that made it) is put back through the target, as a rollback would;
* scale_to_zero: the service is stopped (ECS: desired count 0; Docker: its containers);
* report: only the report.

One action per report, never two: the action taken is kept in the report's detail and a
check that finds it there does nothing more (the checks take turns on the cluster's row, as
the agent watch does). During a rollout of the placement the rollout engine has it: a task
of the new revision that is OOM-killed fails the placement and it is restored at once
(deploys/rollout), so the watch only reports. Nor does it act on a placement that no longer
runs the looping revision (a rollout restored it already, or a person deployed a fix).

A report closes when the window holds no loop of its service any more; one whose service was
scaled to zero stays open until the service runs again, so the badge says why it is down.

Where the kills come from: on ECS, the cluster's stopped tasks (ECS keeps them about an hour;
clusters/targets/ecs.py reads each once) stopped with OutOfMemoryError, each on its container
instance (on Fargate every task is its own host); on a Docker host, the engine's oom events,
each container counting as a host of its own (they share one machine, but each is one
process's run out of memory).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster, ClusterKind, ClusterReport, Placement, ReportKind
from clusters.targets import docker as docker_target
from clusters.targets import docker_events
from clusters.targets import ecs as ecs_target
from clusters.targets.base import Progress, TargetError, Watch
from clusters.targets.docker_replicas import APPLICATION, PLACEMENT, REVISION, SERVICE
from deploys.states import FINAL_STATES

from .reports import Outcome, close, open_report, open_reports

HOSTS = 2  # OOM kills on this many hosts make a loop
DONE = "done"  # deploys.models.RolloutStatus.DONE: read through placement.rollouts
# How long one check may step a Docker restore on; the next check carries on from the labels.
DOCKER_RESTORE_STEPPING = 20.0

# What a report's detail["action"] says was done; anything set means: nothing more to do.
RESTORED, RESTORING, SCALED, REPORTED, RESTORE_FAILED = (
    "restored",
    "restoring",
    "scaled_to_zero",
    "reported",
    "restore_failed",
)


@dataclass(frozen=True)
class OomKill:
    subject: str  # the service, as its report names it
    revision: str  # what it ran: a task definition ARN, a Docker revision
    host: str  # where: an EC2 instance, a Fargate task, a container
    at: datetime
    placement_id: int | None = None  # known on a Docker host; on ECS found by service name


@dataclass(frozen=True)
class Loop:
    subject: str
    revision: str
    kills: tuple[OomKill, ...]

    @property
    def hosts(self) -> list[str]:
        return sorted({k.host for k in self.kills})

    @property
    def placement_id(self) -> int | None:
        return next((k.placement_id for k in self.kills if k.placement_id), None)


def find_loops(kills: Iterable[OomKill], *, now: datetime, window: timedelta) -> dict[str, Loop]:
    """The loops in the window, by subject: a service and revision killed on HOSTS or more
    hosts. Where one service has loops of two revisions, the newest counts."""
    by_revision: dict[tuple[str, str], list[OomKill]] = defaultdict(list)
    for kill in kills:
        if kill.at >= now - window:  # one stamped ahead of our clock is recent too
            by_revision[(kill.subject, kill.revision)].append(kill)
    loops: dict[str, Loop] = {}
    for (subject, revision), found in by_revision.items():
        if len({k.host for k in found}) < HOSTS:
            continue
        loop = Loop(subject, revision, tuple(sorted(found, key=lambda k: k.at)))
        known = loops.get(subject)
        if known is None or loop.kills[-1].at > known.kills[-1].at:
            loops[subject] = loop
    return loops


# ------------------------------------------------------------------- where kills come from


def kills_on(cluster: Cluster) -> list[OomKill]:
    """The cluster's OOM kills in the window, read from its target."""
    if cluster.kind == ClusterKind.ECS:
        return _ecs_kills(cluster)
    if cluster.kind == ClusterKind.DOCKER:
        return _docker_kills(cluster)
    return []


def _ecs_kills(cluster: Cluster) -> list[OomKill]:
    stopped = ecs_target.target_for_region(cluster.region).cluster_stopped_tasks(cluster.name)
    hosts = dict(cluster.instances.values_list("arn", "ec2_instance_id"))
    return [
        OomKill(
            subject=task.service,
            revision=task.task_definition,
            host=(
                hosts.get(task.container_instance) or task.container_instance.rsplit("/", 1)[-1]
                if task.container_instance
                else f"task {task.arn.rsplit('/', 1)[-1]}"  # Fargate: a host of its own
            ),
            at=task.stopped_at,
        )
        for task in stopped
        if task.oom_killed and task.service and task.stopped_at is not None
    ]


def _docker_kills(cluster: Cluster) -> list[OomKill]:
    target = docker_target.target_for_host(cluster.docker_host)
    until = time.time()
    with target.engine("read the OOM kills"):
        found = docker_events.oom_kills(
            target.client, until - settings.FC_CRASH_LOOP_WINDOW_SECONDS, until
        )
    # Only this cluster's placements: an engine may have run containers of others before.
    ours = {
        str(pk)
        for pk in Placement.objects.filter(cluster=cluster, retired_at__isnull=True).values_list(
            "pk", flat=True
        )
    }
    return [
        OomKill(
            subject=f"{kill.get(APPLICATION, '')}/{kill.get(SERVICE, '')}",
            revision=kill.get(REVISION, ""),
            host=kill.get("name", "?"),
            at=datetime.fromtimestamp(float(kill["at"]), tz=UTC),
            placement_id=int(kill[PLACEMENT]),
        )
        for kill in found
        if kill.get(PLACEMENT) in ours
    ]


# ---------------------------------------------------------------------------- the check


def check_crash_loops(
    cluster: Cluster, kills: Iterable[OomKill], *, now: datetime | None = None
) -> Outcome:
    """Report the loops among `kills`, act on each once, close the reports of those over."""
    now = now or timezone.now()
    window = timedelta(seconds=settings.FC_CRASH_LOOP_WINDOW_SECONDS)
    loops = find_loops(kills, now=now, window=window)
    checked = Outcome()
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=cluster.pk)
        still_open = open_reports(cluster, ReportKind.CRASH_LOOP)
        for subject, loop in loops.items():
            report = still_open.pop(subject, None)
            if report is not None and report.detail.get("revision") != loop.revision:
                close(report, now, f"{_label(cluster, loop.revision)} loops now", checked)
                report = None
            placement = _placement(cluster, loop)
            if report is None:
                report = _open(cluster, loop, placement, now, checked)
            elif report.detail.get("hosts") != loop.hosts:
                report.detail = {**report.detail, "hosts": loop.hosts, "kills": _kills(loop)}
                report.save(update_fields=["detail"])
            Stopping(cluster, report, loop, placement).act()
        for report in still_open.values():
            placement = Placement.objects.filter(pk=report.detail.get("placement")).first()
            if report.detail.get("action") == RESTORING and placement is not None:
                Stopping(cluster, report, None, placement).carry_on_restoring()
            if report.detail.get("action") == SCALED and placement is not None:
                if not _runs_again(placement):
                    continue  # stopped on purpose: the report says why it is down
            close(report, now, f"no OOM kills on {HOSTS} hosts in the last {_window()}", checked)
    return checked


def _open(cluster, loop: Loop, placement, now: datetime, checked) -> ClusterReport:
    label = _label(cluster, loop.revision)
    where = "containers" if cluster.kind == ClusterKind.DOCKER else "hosts"
    return open_report(
        cluster,
        ReportKind.CRASH_LOOP,
        now,
        f"{loop.subject} at {label} was OOM-killed on {len(loop.hosts)} {where} "
        f"({', '.join(loop.hosts)}) within {_window()}: a process that outgrows its memory, "
        "moving on as each one dies",
        checked,
        subject=loop.subject,
        detail={
            "revision": loop.revision,
            "hosts": loop.hosts,
            "kills": _kills(loop),
            "placement": placement.pk if placement else None,
            "action": "",
        },
    )


def _window() -> str:
    seconds = round(settings.FC_CRASH_LOOP_WINDOW_SECONDS)
    return f"{seconds // 60} min" if seconds >= 60 and not seconds % 60 else f"{seconds} s"


def _kills(loop: Loop) -> list[dict[str, str]]:
    return [{"host": k.host, "at": k.at.isoformat()} for k in loop.kills]


def _placement(cluster: Cluster, loop: Loop) -> Placement | None:
    placements = Placement.objects.filter(cluster=cluster, retired_at__isnull=True)
    if loop.placement_id is not None:
        return (
            placements.filter(pk=loop.placement_id).select_related("service__application").first()
        )
    return (
        placements.filter(ecs_service_name=loop.subject)
        .select_related("service__application")
        .first()
    )


def _label(cluster: Cluster, revision: str) -> str:
    return ecs_target.revision_name(revision) if cluster.kind == ClusterKind.ECS else revision


def _target(placement: Placement):
    if placement.cluster.kind == ClusterKind.DOCKER:
        return docker_target.target_for(placement)
    return ecs_target.target_for(placement)


def _still_runs(target, placement: Placement, revision: str) -> bool:
    """Is the placement still on the looping revision? A Docker placement whose containers
    all died runs nothing, but is still on the revision they were."""
    current = target.current(placement)
    if current or placement.cluster.kind != ClusterKind.DOCKER:
        return current == revision
    return any(r.revision == revision for r in target.replicas(placement))


def _runs_again(placement: Placement) -> bool:
    """Has a service scaled to zero been started again (by a person, or a deploy)?"""
    target = _target(placement)
    if placement.cluster.kind == ClusterKind.DOCKER:
        return any(r.status == "running" for r in target.replicas(placement))
    return target.describe_service(placement.cluster.name, placement.ecs_service_name).desired > 0


class Stopping:
    """What one check does about one looping service: at most the one action, once."""

    def __init__(self, cluster: Cluster, report: ClusterReport, loop: Loop | None, placement):
        self.cluster, self.report, self.loop, self.placement = cluster, report, loop, placement

    def act(self) -> None:
        if self.report.detail.get("action"):
            if self.report.detail["action"] == RESTORING:
                self.carry_on_restoring()
            return  # done once: never twice
        if self.placement is None:
            return self._done(REPORTED, "no placement of Fat Controller's runs it: reported only")
        rolling = list(
            self.placement.rollouts.exclude(deploy__state__in=FINAL_STATES).values_list(
                "deploy_id", flat=True
            )
        )
        if rolling:
            # Not an action: once the rollout is over, a loop still running is acted on.
            self._note(f"deploy #{rolling[0]} is rolling out to it: the rollout restores it")
            return
        target = _target(self.placement)
        try:
            if not _still_runs(target, self.placement, self.loop.revision):
                return self._done(REPORTED, "it runs another revision now: nothing to stop")
            how = self.placement.service.application.crash_loop
            if how == "report":
                return self._done(REPORTED, "the application's crash_loop is report: reported only")
            if how == "scale_to_zero":
                target.scale_to_zero(self.placement)
                return self._done(SCALED, "scaled to zero: deploy a fixed revision and scale it up")
            self._restore(target)
        except TargetError as exc:
            self._note(f"could not stop it yet ({exc}): the next check tries again")

    def _restore(self, target) -> None:
        made = (
            self.placement.rollouts.filter(status=DONE, revision_made=self.loop.revision)
            .order_by("-finished_at", "-id")
            .first()
        )
        if made is None or not made.revision_before:
            return self._done(
                REPORTED,
                "no revision before it is known (Fat Controller did not deploy it): reported "
                "only; scale it down or deploy a fixed revision",
            )
        good = made.revision_before
        ledger = ReportLedger(self.report, detail={"before": made.detail.get("before", {})})
        handle = target.restore(self.placement, good, ledger)
        self.report.detail = {**self.report.detail, "good": good, "handle": handle}
        label = _label(self.cluster, good)
        if self.cluster.kind == ClusterKind.DOCKER:
            self._done(RESTORING, f"restoring {label}, the revision before it")
            self.carry_on_restoring()
        else:
            self._done(RESTORED, f"restored {label}, the revision before it ({handle})")

    def carry_on_restoring(self) -> None:
        """Step a Docker restore on for a while; the next check carries on where it stopped."""
        target = _target(self.placement)
        detail = self.report.detail
        watch = Watch(self.placement, detail.get("handle", ""), detail.get("good", ""), wait=5.0)
        deadline = time.monotonic() + DOCKER_RESTORE_STEPPING
        try:
            while time.monotonic() < deadline:
                (seen,) = target.observe([watch])
                if seen.error is not None:
                    raise seen.error
                if seen.progress is Progress.OUT:
                    label = _label(self.cluster, watch.revision)
                    return self._done(RESTORED, f"restored {label}, the revision before it")
                if seen.progress is Progress.FAILED:
                    return self._done(RESTORE_FAILED, f"the restore failed: {seen.reason}")
        except TargetError as exc:
            self._note(f"the restore waits ({exc}): the next check carries on")

    def _done(self, action: str, words: str) -> None:
        self.report.detail = {**self.report.detail, "action": action, "said": words}
        self.report.save(update_fields=["detail"])

    def _note(self, words: str) -> None:
        if self.report.detail.get("said") != words:
            self.report.detail = {**self.report.detail, "said": words}
            self.report.save(update_fields=["detail"])


@dataclass
class ReportLedger:
    """The Ledger protocol (clusters/targets/base.py) kept in a report's detail["ledger"], so
    a restore the watch started is carried on by the next check, whoever runs it."""

    report: ClusterReport
    detail: dict[str, Any]
    revision_before: str = ""
    revision_made: str = ""
    start_handle: str = ""
    restore_handle: str = ""
    commit: str = ""

    def write(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        kept = {"detail": self.detail, "restore_handle": self.restore_handle}
        self.report.detail = {**self.report.detail, "ledger": kept}
        self.report.save(update_fields=["detail"])
