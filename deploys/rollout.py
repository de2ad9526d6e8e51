"""The rollout: a green candidate goes out to the application's ECS services, phase by phase.

Three steps, each a short tick run again every FC_ROLLOUT_POLL_SECONDS until its state moves:

* deploying: for the lowest phase not done, every placement in it is started (its running
  revision recorded, a new revision registered that differs only in the image, the service
  updated) and then watched; phases go in order, the services of a phase together.
* verifying: the soak. Every service is watched the same way until `verify_until`.
* rolling_back: every service touched goes back to the revision recorded before it was
  touched, highest phase first, and is watched the same way.

What a tick learns and does is written on the ServiceRollout rows before the next AWS call,
so a worker that dies anywhere leaves enough for another to carry on without doing anything
twice: a deployment already started is adopted, not started again. A lease on the deploy
keeps two ticks (a redelivered task, the safety net's resend) from working at once.

Failure is never taken from "steady" alone. A service counts as out only when its PRIMARY
deployment is the one this deploy started, runs this deploy's revision and has every task
running; tasks of the new revision that stopped with an error, a FAILED deployment, ECS
rolling the service back by itself, a deployment not complete in the phase timeout or a
failing health check each fail it, with the reason in plain words.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from builds.models import BuildStatus
from clusters.ecs import EcsError, EcsTarget, EcsUnavailable, image_exists, revision_name
from clusters.models import Placement, PlacementKind

from . import leases, pipeline, slot
from .models import Deploy, RolloutStatus, ServiceRollout
from .statemachine import IllegalTransition, record_event, transition
from .states import Mode, State

log = logging.getLogger(__name__)

R = RolloutStatus
TOUCHED = (R.UPDATING, R.DONE, R.FAILED)
BACK_OR_GIVEN_UP = (R.ROLLED_BACK, R.ROLLBACK_FAILED)


class RolloutProblem(Exception):
    """A service failed to take (or give back) a revision; the message says why."""


def ecs_placements(application):
    return (
        Placement.objects.filter(service__application=application, kind=PlacementKind.ECS)
        .select_related("service", "cluster")
        .order_by("service__phase", "id")
    )


def has_rollout_target(application) -> bool:
    return ecs_placements(application).exists()


def image_of(deploy: Deploy, build) -> str:
    """What the build pushed, and what the rollout deploys."""
    return f"{deploy.application.image_repository}:{build.image_tag if build else ''}"


def start_rollout(deploy: Deploy, build) -> None:
    """building -> deploying, once the candidate's build passed (deploy mode)."""
    image = image_of(deploy, build)
    phases = sorted({p.service.phase for p in ecs_placements(deploy.application)})
    transition(
        deploy.pk,
        State.DEPLOYING,
        from_states=frozenset({State.BUILDING}),
        message=f"build {build.attempt} passed; rolling out {image} in "
        f"{len(phases)} phase{'s' if len(phases) != 1 else ''}",
    )


# ------------------------------------------------------------------------------------ ticks


def tick(deploy: Deploy, step) -> None:
    """Run one tick of `step` under the deploy's lease, then ask for the next one."""
    if not _take_lease(deploy):
        log.info("deploy #%s: another tick is at work; this one stands down", deploy.pk)
        return
    try:
        step(deploy)
    finally:
        # If the tick moved the deploy, the transition freed the lease and the next state's
        # tick may hold one already.
        leases.release(deploy.pk, deploy.state)
    current = Deploy.objects.filter(pk=deploy.pk).values_list("state", flat=True).first()
    if current == deploy.state:
        pipeline.send_task_later(pipeline.STEP_TASKS[deploy.state], deploy.pk)


def _take_lease(deploy: Deploy) -> bool:
    # updated_at is the heartbeat the safety net reads: a tick that runs is alive.
    return leases.take(
        deploy.pk, deploy.state, settings.FC_ROLLOUT_LEASE, updated_at=timezone.now()
    )


def deploy_step(deploy: Deploy) -> None:
    """deploying: start or watch the lowest phase that is not out yet."""
    rollouts = _rollouts_of(deploy)
    if not rollouts:
        _move(deploy, State.FAILED, "there is no ECS service to deploy to: nothing was touched")
        return
    if not any(r.status != R.PENDING for r in rollouts) and deploy.mode != Mode.RESTORE:
        missing = _missing_image(rollouts[0].image)
        if missing:
            _move(deploy, State.FAILED, f"{missing}: no service was touched")
            return
    # A phase that comes out starts the next at once, and the last one starts the soak:
    # no tick is spent only noticing that a phase is done.
    while waiting := [r for r in rollouts if r.status != R.DONE]:
        phase = waiting[0].phase
        problems = _each_service(
            deploy,
            [r for r in waiting if r.phase == phase],
            lambda rollout: (_start if rollout.status == R.PENDING else _watch_forward)(
                deploy, rollout
            ),
        )
        if problems:
            _move(deploy, State.ROLLING_BACK, "; ".join(problems) + ". Rolling back.")
            return
        if any(r.status != R.DONE for r in waiting if r.phase == phase):
            return  # still going out: the next tick looks again
    soak = deploy.application.soak_seconds
    _move(
        deploy,
        State.VERIFYING,
        f"every phase is out; watching for {soak} s before "
        + ("finishing" if deploy.mode == Mode.RESTORE else "merging"),
        verify_until=timezone.now() + timedelta(seconds=soak),
    )


def _each_service(deploy: Deploy, rollouts: list[ServiceRollout], act) -> list[str]:
    """Act on each service; a failure marks it failed and is returned, passing trouble said."""
    problems = []
    for rollout in rollouts:
        try:
            act(rollout)
        except EcsUnavailable as exc:
            _note_trouble(deploy, rollout, exc)
        except (RolloutProblem, EcsError) as exc:
            _mark(rollout, R.FAILED, str(exc))
            problems.append(str(exc))
    return problems


def verify_step(deploy: Deploy) -> None:
    """verifying: the soak; the same watch on every service until verify_until."""
    problems = _each_service(
        deploy, _rollouts_of(deploy), lambda rollout: _watch_settled(deploy, rollout)
    )
    if problems:
        _move(deploy, State.ROLLING_BACK, "; ".join(problems) + ". Rolling back.")
        return
    if deploy.verify_until and timezone.now() >= deploy.verify_until:
        if deploy.mode == Mode.RESTORE:
            _move(deploy, State.SUCCEEDED, "healthy through the soak: the restore is done")
        else:
            _move(
                deploy,
                State.MERGING_TO_DEFAULT,
                "healthy through the soak; merging the candidate",
            )


def rollback_step(deploy: Deploy) -> None:
    """rolling_back: put every touched service back, highest phase first, and watch it."""
    rollouts = _rollouts_of(deploy)
    while to_undo := [
        r for r in rollouts if r.previous_task_definition and r.status not in BACK_OR_GIVEN_UP
    ]:
        phase = max(r.phase for r in to_undo)
        in_phase = [r for r in to_undo if r.phase == phase]
        for rollout in in_phase:
            _roll_back_one(deploy, rollout)
        if any(r.status not in BACK_OR_GIVEN_UP for r in in_phase):
            return  # still going back: the next tick looks again
    _finish_rollback(deploy, rollouts)


def _roll_back_one(deploy: Deploy, rollout: ServiceRollout) -> None:
    try:
        if rollout.status in (*TOUCHED, R.PENDING):
            _start_rollback(deploy, rollout)
        else:
            _watch_back(deploy, rollout)
    except RolloutProblem as exc:
        _mark(rollout, R.ROLLBACK_FAILED, str(exc))
    except EcsUnavailable as exc:
        if _over_time(deploy, rollout):
            _mark(rollout, R.ROLLBACK_FAILED, f"{exc}, past the phase timeout")
        else:
            _note_trouble(deploy, rollout, exc)
    except EcsError as exc:
        _mark(rollout, R.ROLLBACK_FAILED, str(exc))


# ------------------------------------------------------------------------- one service


def _rollouts_of(deploy: Deploy) -> list[ServiceRollout]:
    """The deploy's rollout rows, made on first use: one per ECS placement, by phase."""
    existing = list(deploy.rollouts.select_related("placement__service", "placement__cluster"))
    if existing or deploy.mode == Mode.RESTORE:
        return existing
    image = image_of(deploy, deploy.builds.filter(status=BuildStatus.SUCCEEDED).last())
    for placement in ecs_placements(deploy.application):
        ServiceRollout.objects.get_or_create(
            deploy=deploy,
            placement=placement,
            defaults={"phase": placement.service.phase, "image": image},
        )
    return list(deploy.rollouts.select_related("placement__service", "placement__cluster"))


def _target(rollout: ServiceRollout) -> EcsTarget:
    return EcsTarget(rollout.placement.cluster.region)


def _name(rollout: ServiceRollout) -> str:
    placement = rollout.placement
    return f"{placement.ecs_service_name} on {placement.cluster.name}"


def _start(deploy: Deploy, rollout: ServiceRollout) -> None:
    placement, target = rollout.placement, _target(rollout)
    cluster, service = placement.cluster.name, placement.ecs_service_name
    if not rollout.previous_task_definition:
        running = target.describe_service(cluster, service)
        # Written before anything changes: it is what a rollback restores.
        _save(rollout, previous_task_definition=running.task_definition, started_at=timezone.now())
    if not rollout.new_task_definition:
        revision = target.register_revision(
            rollout.previous_task_definition,
            container=placement.container_name,
            image=rollout.image,
        )
        _save(rollout, new_task_definition=revision)
    deployment_id = _adopt_or_update(target, cluster, service, rollout.new_task_definition)
    _save(rollout, deployment_id=deployment_id, status=R.UPDATING)
    record_event(
        deploy,
        f"{_name(rollout)}: {revision_name(rollout.previous_task_definition)} -> "
        f"{revision_name(rollout.new_task_definition)} (deployment {deployment_id})",
    )


def _adopt_or_update(target: EcsTarget, cluster: str, service: str, task_definition: str) -> str:
    """Update the service, unless a tick that died already did: then take its deployment."""
    primary = target.describe_service(cluster, service).primary
    if primary and primary.task_definition == task_definition:
        return primary.id
    return target.update_service(cluster, service, task_definition)


def _watch_forward(deploy: Deploy, rollout: ServiceRollout) -> None:
    if _watch(deploy, rollout, rollout.deployment_id, rollout.new_task_definition):
        _mark(rollout, R.DONE, f"{revision_name(rollout.new_task_definition)} is out")
        record_event(
            deploy,
            f"{_name(rollout)} runs {revision_name(rollout.new_task_definition)}: "
            f"{rollout.running_count} of {rollout.desired_count} tasks",
        )


def _watch_settled(deploy: Deploy, rollout: ServiceRollout) -> None:
    if rollout.status != R.DONE:
        return
    if not _watch(deploy, rollout, rollout.deployment_id, rollout.new_task_definition, soak=True):
        raise RolloutProblem(
            f"{_name(rollout)} is no longer fully running "
            f"{revision_name(rollout.new_task_definition)}: {rollout.running_count} of "
            f"{rollout.desired_count} tasks"
        )


def _start_rollback(deploy: Deploy, rollout: ServiceRollout) -> None:
    placement, target = rollout.placement, _target(rollout)
    cluster, service = placement.cluster.name, placement.ecs_service_name
    # Adopted when the service already runs it: ECS rolled it back by itself, the forward
    # update never happened, or a tick that died had already sent this one.
    deployment_id = _adopt_or_update(target, cluster, service, rollout.previous_task_definition)
    _save(
        rollout,
        rollback_deployment_id=deployment_id,
        status=R.ROLLING_BACK,
        started_at=timezone.now(),
    )
    record_event(
        deploy,
        f"{_name(rollout)}: back to {revision_name(rollout.previous_task_definition)} "
        f"(deployment {deployment_id})",
    )


def _watch_back(deploy: Deploy, rollout: ServiceRollout) -> None:
    # No health check here: the revision that ran before is restored whatever the check says
    # (a check failing on the old revision too is the world's problem, not this deploy's).
    if _watch(
        deploy,
        rollout,
        rollout.rollback_deployment_id,
        rollout.previous_task_definition,
        check_health=False,
    ):
        _mark(rollout, R.ROLLED_BACK, f"back on {revision_name(rollout.previous_task_definition)}")


def _watch(
    deploy: Deploy,
    rollout: ServiceRollout,
    deployment_id: str,
    task_definition: str,
    *,
    soak: bool = False,
    check_health: bool = True,
) -> bool:
    """True once the deployment is out and healthy; RolloutProblem when it failed."""
    placement, target = rollout.placement, _target(rollout)
    cluster, service = placement.cluster.name, placement.ecs_service_name
    revision = revision_name(task_definition)

    failed = [t for t in target.stopped_tasks(cluster, deployment_id) if t.failed]
    if failed:
        reasons = Counter(t.reason for t in failed).most_common()
        words = ", ".join(reason if n == 1 else f"{reason} ({n})" for reason, n in reasons)
        raise RolloutProblem(
            f"{len(failed)} task{'s' if len(failed) != 1 else ''} of {revision} stopped: {words}"
        )

    state = target.describe_service(cluster, service)
    ours = state.deployment(deployment_id)
    primary = state.primary
    if ours is not None:
        _save(rollout, running_count=ours.running, desired_count=ours.desired)
    if ours is None or ours.rollout_state == "FAILED":
        reason = f" ({ours.rollout_state_reason})" if ours and ours.rollout_state_reason else ""
        runs = revision_name(primary.task_definition) if primary else "nothing"
        raise RolloutProblem(
            f"ECS gave up on deployment {deployment_id} of {revision} on {_name(rollout)}"
            f"{reason} and rolled the service back by itself: it runs {runs}, not {revision}"
        )
    if primary is None or primary.id != deployment_id:
        runs = f"{primary.id} ({revision_name(primary.task_definition)})" if primary else "none"
        raise RolloutProblem(
            f"another deployment took over {_name(rollout)}: its primary deployment is {runs}"
        )
    out = (
        ours.rollout_state == "COMPLETED"
        and ours.running >= ours.desired
        and primary.task_definition == task_definition
    )
    if out and check_health and placement.service.health_check_url:
        _check_health(placement.service.health_check_url, _name(rollout))
    if not out and not soak and _over_time(deploy, rollout):
        raise RolloutProblem(
            f"deployment of {revision} on {_name(rollout)} did not complete within "
            f"{deploy.application.phase_timeout_seconds} s: {ours.running} of {ours.desired} "
            "tasks running"
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


def _over_time(deploy: Deploy, rollout: ServiceRollout) -> bool:
    limit = timedelta(seconds=deploy.application.phase_timeout_seconds)
    return rollout.started_at is not None and timezone.now() - rollout.started_at > limit


def _missing_image(image: str) -> str | None:
    try:
        if image_exists(image):
            return None
    except EcsError as exc:
        return f"could not check the image {image}: {exc}"
    return f"the image {image} is not in its registry"


def _finish_rollback(deploy: Deploy, rollouts: list[ServiceRollout]) -> None:
    failed = [r for r in rollouts if r.status == R.ROLLBACK_FAILED]
    if not failed:
        back = ", ".join(
            f"{_name(r)} runs {revision_name(r.previous_task_definition)}"
            for r in rollouts
            if r.status == R.ROLLED_BACK
        )
        _move(
            deploy,
            State.ROLLED_BACK,
            f"every service runs what it ran before: {back or 'nothing was changed'}",
        )
        return
    where = "; ".join(_describe(r) for r in rollouts if r.previous_task_definition)
    with transaction.atomic():
        _move(
            deploy,
            State.ROLLBACK_FAILED,
            f"the rollback failed, so the queue is frozen until a person looks: {where}",
        )
        slot.lock(
            deploy.application,
            actor=None,
            reason=f"the rollback of deploy #{deploy.pk} failed: see its timeline",
        )


def _describe(rollout: ServiceRollout) -> str:
    state = {
        R.ROLLED_BACK: f"back on {revision_name(rollout.previous_task_definition)}",
        R.ROLLBACK_FAILED: f"NOT rolled back ({rollout.message})",
    }.get(rollout.status, rollout.get_status_display().lower())
    return f"{_name(rollout)}: {state}"


# ------------------------------------------------------------------------------ writes


def _save(rollout: ServiceRollout, **fields) -> None:
    for name, value in fields.items():
        setattr(rollout, name, value)
    ServiceRollout.objects.filter(pk=rollout.pk).update(**fields)


def _mark(rollout: ServiceRollout, status: str, message: str) -> None:
    _save(rollout, status=status, message=message[:1000], finished_at=timezone.now())


def _note_trouble(deploy: Deploy, rollout: ServiceRollout, exc: Exception) -> None:
    # Said once per service and cause, not once a second.
    if rollout.message != str(exc)[:1000]:
        _save(rollout, message=str(exc)[:1000])
        record_event(deploy, f"{_name(rollout)}: {exc}; trying again")


def _move(deploy: Deploy, to_state: State, message: str, **changes) -> None:
    try:
        transition(
            deploy.pk, to_state, from_states=frozenset({deploy.state}), message=message, **changes
        )
    except IllegalTransition as exc:
        log.info("deploy #%s moved on meanwhile: %s", deploy.pk, exc)
