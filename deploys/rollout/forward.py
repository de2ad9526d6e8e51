"""deploying: the image goes out phase by phase, the placements of a phase together.

Nothing is touched before every target has said the image is there to run. A phase that
comes out starts the next at once, and the last one starts the soak: no tick is spent only
noticing that a phase is done.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ..models import Deploy, ServiceRollout
from ..statemachine import transition
from ..states import Mode, State
from . import placements as p
from .placements import R
from .ticks import move


def has_rollout_target(application) -> bool:
    return bool(p.rollout_placements(application))


def start_rollout(deploy: Deploy, build) -> None:
    """building -> deploying, once the candidate's build passed (deploy mode)."""
    image = p.image_of(deploy, build)
    phases = sorted(
        {placement.service.phase for placement in p.rollout_placements(deploy.application)}
    )
    transition(
        deploy.pk,
        State.DEPLOYING,
        from_states=frozenset({State.BUILDING}),
        message=f"build {build.attempt} passed; rolling out {image} in "
        f"{len(phases)} phase{'s' if len(phases) != 1 else ''}",
    )


def deploy_step(deploy: Deploy) -> bool:
    """deploying: start or watch the lowest phase that is not out yet. True: the next tick
    should come at once (placements.look_again_at_once)."""
    rollouts = p.rows_of(deploy)
    if not rollouts:
        move(deploy, State.FAILED, "there is no service to deploy to: nothing was touched")
        return False
    if not any(r.status != R.PENDING for r in rollouts) and deploy.mode != Mode.RESTORE:
        missing = p.refused(rollouts) or p.missing_image(rollouts)
        if missing:
            move(deploy, State.FAILED, f"{missing}: no service was touched")
            return False
        if not _memory_guard_passes(deploy, rollouts):
            return False
    while waiting := [r for r in rollouts if r.status != R.DONE]:
        phase = waiting[0].phase
        in_phase = [r for r in waiting if r.phase == phase]
        seen = p.observe([r for r in in_phase if r.status != R.PENDING], wait=p.poll_wait())

        pending = [r for r in in_phase if r.status == R.PENDING]
        if pending and (held := p.held(pending)):
            for rollout in pending:
                p.note_trouble(deploy, rollout, held)
            return False  # waits, saying why, until an agent reconnects

        def start_or_watch(rollout: ServiceRollout, seen=seen) -> None:
            if rollout.status == R.PENDING:
                p.start(deploy, rollout)
            else:
                _watch(deploy, rollout, seen[rollout.pk])

        problems = p.each(deploy, in_phase, start_or_watch)
        if problems:
            move(deploy, State.ROLLING_BACK, "; ".join(problems) + ". Rolling back.")
            return False
        if any(r.status != R.DONE for r in in_phase):
            return p.look_again_at_once(in_phase, seen)  # still going out
    soak = deploy.application.soak_seconds
    move(
        deploy,
        State.VERIFYING,
        f"every phase is out; watching for {soak} s before "
        + ("finishing" if deploy.mode == Mode.RESTORE else "merging"),
        verify_until=timezone.now() + timedelta(seconds=soak),
    )


def _memory_guard_passes(deploy: Deploy, rollouts: list[ServiceRollout]) -> bool:
    """The memory guard, before anything is touched: by the application's setting, a problem
    fails the deploy (refuse) or is said on the timeline (warn)."""
    problems = p.memory_problems(rollouts)
    if not problems:
        return True
    said = "; ".join(problems)
    if deploy.application.memory_guard == "warn":
        p.record_event(deploy, f"memory guard (a warning: rollout.memory_guard is warn): {said}")
        return True
    move(
        deploy,
        State.FAILED,
        f"the memory guard refused the revision: {said}; no service was touched",
    )
    return False


def _watch(deploy: Deploy, rollout: ServiceRollout, seen) -> None:
    if p.judge(deploy, rollout, seen, rollout.revision_made):
        p.mark(rollout, R.DONE, f"{p.label(rollout, rollout.revision_made)} is out")
        p.record_event(
            deploy,
            f"{p.name_of(rollout)} runs {p.label(rollout, rollout.revision_made)}: "
            f"{p.counts(rollout)}",
        )
