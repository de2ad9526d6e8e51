"""The rollout's rows, one ServiceRollout per placement, and the targets behind them.

A row is its placement's ledger (clusters/targets/base.py): the target writes on it what it
learns and starts before its next call out. Everything a step does to one placement goes
through here: starting it, judging what its target observed (many placements of a target in
one call, so that a target can batch), and the words the timeline says about it.
"""

from __future__ import annotations

from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builds.models import BuildStatus
from clusters import migration, targets
from clusters.health import agents
from clusters.models import Placement
from clusters.targets.base import (
    Observation,
    Progress,
    Target,
    TargetError,
    TargetUnavailable,
    Watch,
    record_events,
)

from ..models import Deploy, RolloutStatus, ServiceRollout
from ..statemachine import record_event
from ..states import Mode

R = RolloutStatus
TOUCHED = (R.UPDATING, R.DONE, R.FAILED)
BACK_OR_GIVEN_UP = (R.ROLLED_BACK, R.ROLLBACK_FAILED)


class RolloutProblem(Exception):
    """A placement failed to take (or give back) a revision; the message says why."""


def rollout_placements(application) -> list[Placement]:
    """The placements a deploy touches now, by phase: those a target drives, on the sides
    their migration phase says (clusters/migration.py); both sides of a dual-running service
    are in the same phase, so they go out together and a failure of either restores both."""
    placements = (
        Placement.objects.filter(service__application=application)
        .select_related("service__migration_phase", "cluster")
        .order_by("service__phase", "id")
    )
    return [p for p in placements if targets.drives(p.kind) and migration.in_use(p)]


def image_of(deploy: Deploy, build) -> str:
    """What the build pushed, and what the rollout deploys."""
    return f"{deploy.application.image_repository}:{build.image_tag if build else ''}"


def rows_of(deploy: Deploy) -> list[ServiceRollout]:
    """The deploy's rollout rows, made on first use: one per placement, by phase."""
    existing = list(deploy.rollouts.select_related("placement__service", "placement__cluster"))
    if existing or deploy.mode == Mode.RESTORE:
        return existing
    image = image_of(deploy, deploy.builds.filter(status=BuildStatus.SUCCEEDED).last())
    # All the rows or none, in one transaction: a worker killed half way through making them
    # must not leave a deploy whose next tick sees some rows, takes them for all, and ships
    # without the rest (the legacy sides of a dual deploy, made last, say).
    with transaction.atomic():
        ServiceRollout.objects.bulk_create(
            [
                ServiceRollout(
                    deploy=deploy, placement=placement, phase=placement.service.phase, image=image
                )
                for placement in rollout_placements(deploy.application)
            ],
            ignore_conflicts=True,  # another worker made them first: theirs are the same
        )
    return list(deploy.rollouts.select_related("placement__service", "placement__cluster"))


def target_of(rollout: ServiceRollout) -> Target:
    return targets.target_for(rollout.placement)


def name_of(rollout: ServiceRollout) -> str:
    return target_of(rollout).name(rollout.placement)


def label(rollout: ServiceRollout, revision: str) -> str:
    return target_of(rollout).label(revision)


def instances(rollout: ServiceRollout, n: int | None) -> str:
    word = target_of(rollout).instance_word
    return f"{n} {word}{'s' if n != 1 else ''}"


def counts(rollout: ServiceRollout) -> str:
    """'2 of 3 tasks', in the target's word for what runs."""
    return f"{rollout.running_count} of {instances(rollout, rollout.desired_count)}"


# --------------------------------------------------------------------------- calls out


def start(deploy: Deploy, rollout: ServiceRollout) -> None:
    """Start the placement on the rollout's image; the target records as it goes."""
    target = target_of(rollout)
    if rollout.started_at is None:
        rollout.write(started_at=timezone.now())
    handle = target.start(rollout.placement, rollout.image, rollout)
    rollout.write(status=R.UPDATING)
    record_event(
        deploy,
        f"{target.name(rollout.placement)}: {target.label(rollout.revision_before)} -> "
        f"{target.label(rollout.revision_made)} ({target.start_word} {handle})",
    )


def start_restore(deploy: Deploy, rollout: ServiceRollout) -> None:
    target = target_of(rollout)
    handle = target.restore(rollout.placement, rollout.revision_before, rollout)
    rollout.write(status=R.ROLLING_BACK, started_at=timezone.now())
    record_event(
        deploy,
        f"{target.name(rollout.placement)}: back to {target.label(rollout.revision_before)} "
        f"({target.start_word} {handle})",
    )


def observe(
    rollouts: list[ServiceRollout],
    *,
    back: bool = False,
    settled: bool = False,
    wait: float = 0.0,
) -> dict[int, Observation]:
    """What each started placement is doing, by row id: one call per target. A target that
    waits for its own changes (base.Target.waits) may take up to `wait` seconds to answer."""
    by_target: dict[int, tuple[Target, list[ServiceRollout]]] = {}
    for rollout in rollouts:
        target = target_of(rollout)
        by_target.setdefault(id(target), (target, []))[1].append(rollout)
    seen: dict[int, Observation] = {}
    for target, rows in by_target.values():
        watches = [
            Watch(
                placement=r.placement,
                handle=r.restore_handle if back else r.start_handle,
                revision=r.revision_before if back else r.revision_made,
                settled=settled,
                wait=wait,
            )
            for r in rows
        ]
        try:
            answers = target.observe(watches)
        except TargetError as exc:
            answers = [Observation(Progress.PROGRESSING, error=exc) for _ in rows]
        for row, answer in zip(rows, answers, strict=True):
            if answer.events:
                record_events(row, answer.events)  # what the deploy page shows per batch
            seen[row.pk] = answer
    return seen


def poll_wait() -> float:
    """How long a waiting target may wait in one tick: the poll it stands in for."""
    return settings.FC_ROLLOUT_POLL_SECONDS


def look_again_at_once(rollouts: list[ServiceRollout], seen: dict[int, Observation]) -> bool:
    """Should the next tick come at once rather than after the poll? Yes when a waiting
    target (base.Target.waits) waited a whole poll in this tick, or has just started one of
    these placements (not observed yet), so that its wait begins while they come up."""
    if any(answer.waited for answer in seen.values()):
        return True
    return any(
        r.pk not in seen
        and r.status in (R.UPDATING, R.ROLLING_BACK)
        and getattr(target_of(r), "waits", False)
        for r in rollouts
    )


def judge(
    deploy: Deploy,
    rollout: ServiceRollout,
    seen: Observation,
    revision: str,
    *,
    soak: bool = False,
    check_health: bool = True,
) -> bool:
    """True once the start is out and healthy; RolloutProblem when it failed."""
    if seen.error is not None:
        raise seen.error
    if seen.running is not None:
        rollout.write(running_count=seen.running, desired_count=seen.desired or 0)
    if seen.progress is Progress.FAILED:
        raise RolloutProblem(seen.reason)
    out = seen.progress is Progress.OUT
    service = rollout.placement.service
    if out and check_health and service.health_check_url:
        _check_health(service.health_check_url, name_of(rollout))
    if not out and not soak and over_time(deploy, rollout):
        target = target_of(rollout)
        raise RolloutProblem(
            f"{target.start_word} of {target.label(revision)} on {name_of(rollout)} did not "
            f"complete within {deploy.application.phase_timeout_seconds} s: "
            f"{counts(rollout)} running" + (f" ({seen.reason})" if seen.reason else "")
        )
    return out


def _check_health(url: str, name: str) -> None:
    try:
        answer = requests.get(url, timeout=settings.FC_AWS_TIMEOUT, allow_redirects=False)
    except requests.RequestException as exc:
        raise RolloutProblem(
            f"the health check of {name} did not answer: {exc.__class__.__name__}"
        ) from exc
    if not 200 <= answer.status_code < 300:
        raise RolloutProblem(f"the health check of {name} answered {answer.status_code}")


def over_time(deploy: Deploy, rollout: ServiceRollout) -> bool:
    limit = timedelta(seconds=deploy.application.phase_timeout_seconds)
    return rollout.started_at is not None and timezone.now() - rollout.started_at > limit


def refused(rollouts: list[ServiceRollout]) -> str | None:
    """Why some placement could not take the image at all (its target's optional
    `refusal`), asked of every placement before any is touched; None when none refuses."""
    reasons = []
    for rollout in rollouts:
        refusal = getattr(target_of(rollout), "refusal", None)
        reason = refusal(rollout.placement, rollout.image) if refusal else ""
        if reason:
            reasons.append(reason)
    return "; ".join(reasons) or None


def held(rollouts: list[ServiceRollout]) -> TargetUnavailable | None:
    """Why these placements must not start now: a cluster of theirs whose every ECS agent is
    disconnected (clusters/health/agents.py), where a start would place nothing."""
    report = agents.holding({r.placement.cluster_id for r in rollouts if r.placement.cluster_id})
    if report is None:
        return None
    return TargetUnavailable(f"held: {report.message} (report #{report.pk})")


def memory_problems(rollouts: list[ServiceRollout]) -> list[str]:
    """What the memory guard (clusters/health/memory_guard.py) finds wrong, asked of every placement
    whose target has it (an optional `memory_problems`) before any is touched."""
    problems = []
    for rollout in rollouts:
        check = getattr(target_of(rollout), "memory_problems", None)
        if check is None:
            continue
        try:
            problems += check(rollout.placement)
        except TargetError as exc:
            problems.append(f"could not check the memory of {name_of(rollout)}: {exc}")
    return problems


def missing_image(rollouts: list[ServiceRollout]) -> str | None:
    """Why the image cannot be deployed, asked of each target once; None when it can."""
    asked = set()
    for rollout in rollouts:
        target = target_of(rollout)
        if id(target) in asked:
            continue
        asked.add(id(target))
        try:
            if not target.image_exists(rollout.image):
                return f"the image {rollout.image} is not in its registry"
        except TargetError as exc:
            return f"could not check the image {rollout.image}: {exc}"
    return None


# ------------------------------------------------------------------------------ writes


def each(deploy: Deploy, rollouts: list[ServiceRollout], act) -> list[str]:
    """Act on each placement; a failure marks it failed and is returned, passing trouble said."""
    problems = []
    for rollout in rollouts:
        try:
            act(rollout)
        except TargetUnavailable as exc:
            if not over_time(deploy, rollout):
                note_trouble(deploy, rollout, exc)
                continue
            # Away for longer than a phase may take: the placement is given up like one that
            # never came out, so the deploy rolls back instead of waiting without end.
            problem = (
                f"{name_of(rollout)}: {exc}, for longer than the phase timeout "
                f"({deploy.application.phase_timeout_seconds} s)"
            )
            mark(rollout, R.FAILED, problem)
            problems.append(side_of(rollout) + problem)
        except (RolloutProblem, TargetError) as exc:
            mark(rollout, R.FAILED, str(exc))
            problems.append(side_of(rollout) + str(exc))
    return problems


def side_of(rollout: ServiceRollout) -> str:
    """'the legacy side of worker failed: ' while the deploy drives the service on more than
    one side (a dual-running migration), so the timeline says which side it was."""
    kinds = set(
        ServiceRollout.objects.filter(
            deploy_id=rollout.deploy_id, placement__service_id=rollout.placement.service_id
        ).values_list("placement__kind", flat=True)
    )
    if len(kinds) < 2:
        return ""
    placement = rollout.placement
    return f"the {placement.side} side of {placement.service.name} failed: "


def mark(rollout: ServiceRollout, status: str, message: str) -> None:
    rollout.write(status=status, message=message[:1000], finished_at=timezone.now())


def note_trouble(deploy: Deploy, rollout: ServiceRollout, exc: Exception) -> None:
    # Said once per placement and cause, not once a second.
    if rollout.message != str(exc)[:1000]:
        rollout.write(message=str(exc)[:1000])
        record_event(deploy, f"{name_of(rollout)}: {exc}; trying again")
