"""verifying: the soak. Every placement that is out is watched until `verify_until`; one
that stops running the new revision everywhere fails the deploy and starts the rollback."""

from __future__ import annotations

from django.utils import timezone

from ..models import Deploy, ServiceRollout
from ..states import Mode, State
from . import placements as p
from .placements import R
from .ticks import move


def verify_step(deploy: Deploy) -> None:
    """verifying: the same watch on every placement until verify_until."""
    out = [r for r in p.rows_of(deploy) if r.status == R.DONE]
    seen = p.observe(out, settled=True)
    problems = p.each(deploy, out, lambda rollout: _watch(deploy, rollout, seen[rollout.pk]))
    if problems:
        move(deploy, State.ROLLING_BACK, "; ".join(problems) + ". Rolling back.")
        return
    if deploy.verify_until and timezone.now() >= deploy.verify_until:
        if deploy.mode == Mode.RESTORE:
            move(deploy, State.SUCCEEDED, "healthy through the soak: the restore is done")
        else:
            move(
                deploy, State.MERGING_TO_DEFAULT, "healthy through the soak; merging the candidate"
            )


def _watch(deploy: Deploy, rollout: ServiceRollout, seen) -> None:
    if not p.judge(deploy, rollout, seen, rollout.revision_made, soak=True):
        raise p.RolloutProblem(
            f"{p.name_of(rollout)} is no longer fully running "
            f"{p.label(rollout, rollout.revision_made)}: {p.counts(rollout)}"
        )
