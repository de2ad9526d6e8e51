"""rolling_back: every placement touched goes back to the revision recorded before it was
touched, highest phase first, and is watched until it runs it again.

No health check on the way back: the revision that ran before is restored whatever the check
says (a check failing on the old revision too is the world's problem, not this deploy's). A
restore that fails, or a target that stays away past the phase timeout, ends the deploy
rollback_failed and freezes the queue until a person looks.
"""

from __future__ import annotations

from django.db import transaction

from .. import slot
from ..models import Deploy, ServiceRollout
from ..states import State
from . import placements as p
from .placements import BACK_OR_GIVEN_UP, TOUCHED, R
from .ticks import move


def rollback_step(deploy: Deploy) -> bool:
    """rolling_back: put every touched placement back, highest phase first, and watch it.
    True: the next tick should come at once (placements.look_again_at_once)."""
    rollouts = p.rows_of(deploy)
    while to_undo := [
        r for r in rollouts if r.revision_before and r.status not in BACK_OR_GIVEN_UP
    ]:
        phase = max(r.phase for r in to_undo)
        in_phase = [r for r in to_undo if r.phase == phase]
        seen = p.observe(
            [r for r in in_phase if r.status == R.ROLLING_BACK], back=True, wait=p.poll_wait()
        )
        for rollout in in_phase:
            _back_one(deploy, rollout, seen.get(rollout.pk))
        if any(r.status not in BACK_OR_GIVEN_UP for r in in_phase):
            return p.look_again_at_once(in_phase, seen)  # still going back
    _finish(deploy, rollouts)
    return False


def _back_one(deploy: Deploy, rollout: ServiceRollout, seen) -> None:
    try:
        if rollout.status in (*TOUCHED, R.PENDING):
            p.start_restore(deploy, rollout)
        elif p.judge(deploy, rollout, seen, rollout.revision_before, check_health=False):
            p.mark(rollout, R.ROLLED_BACK, f"back on {p.label(rollout, rollout.revision_before)}")
    except p.RolloutProblem as exc:
        p.mark(rollout, R.ROLLBACK_FAILED, str(exc))
    except p.TargetUnavailable as exc:
        if p.over_time(deploy, rollout):
            p.mark(rollout, R.ROLLBACK_FAILED, f"{exc}, past the phase timeout")
        else:
            p.note_trouble(deploy, rollout, exc)
    except p.TargetError as exc:
        p.mark(rollout, R.ROLLBACK_FAILED, str(exc))


def _finish(deploy: Deploy, rollouts: list[ServiceRollout]) -> None:
    failed = [r for r in rollouts if r.status == R.ROLLBACK_FAILED]
    if not failed:
        back = ", ".join(
            f"{p.name_of(r)} runs {p.label(r, r.revision_before)}"
            for r in rollouts
            if r.status == R.ROLLED_BACK
        )
        move(
            deploy,
            State.ROLLED_BACK,
            f"every service runs what it ran before: {back or 'nothing was changed'}",
        )
        return
    where = "; ".join(_describe(r) for r in rollouts if r.revision_before)
    with transaction.atomic():
        move(
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
        R.ROLLED_BACK: f"back on {p.label(rollout, rollout.revision_before)}",
        R.ROLLBACK_FAILED: f"NOT rolled back ({rollout.message})",
    }.get(rollout.status, rollout.get_status_display().lower())
    return f"{p.name_of(rollout)}: {state}"
