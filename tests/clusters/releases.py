"""A release Fat Controller shipped, as the database records it: a deploy that succeeded and
its finished rollout on one placement (what a restore of the revision before reads)."""

from django.contrib.auth import get_user_model
from django.utils import timezone

from deploys.models import Deploy, RolloutStatus, ServiceRollout
from deploys.states import State


def shipped(placement, before: str, made: str, *, detail: dict | None = None) -> Deploy:
    """`placement` went from revision `before` to `made` in a deploy that succeeded."""
    user, _ = get_user_model().objects.get_or_create(username="ada")
    deploy = Deploy.objects.create(
        application=placement.service.application,
        branch="feature/cache",
        requester=user,
        state=State.SUCCEEDED,
    )
    ServiceRollout.objects.create(
        deploy=deploy,
        placement=placement,
        phase=1,
        status=RolloutStatus.DONE,
        revision_before=before,
        revision_made=made,
        detail=detail or {},
        finished_at=timezone.now(),
    )
    return deploy
