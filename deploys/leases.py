"""The step lease: at most one worker at work on a deploy's step at a time, and a sign of
life the safety net reads.

A lease is taken with a conditional update (free, run out, or held by a process of this host
that is gone), so of two deliveries of one step only one runs; it names its holder
(host:pid:start time), so a pool process the OOM killer took is known dead at once on its own
machine instead of after the lease runs out. It belongs to the state's step: a transition
clears it (statemachine.transition), and it is released only in the state it was taken in.
"""

import enum
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from lib.processes import holder_is_gone, this_process

from .models import Deploy


class Taken(enum.Enum):
    NO = "held by another"
    FREE = "free or run out"
    FROM_GONE = "taken from a process of this host that is gone"

    def __bool__(self) -> bool:
        return self is not Taken.NO


# The fields of a deploy whose step nobody holds (a transition or the safety net frees it).
FREED = {"step_lease_until": None, "step_lease_holder": ""}


def take(deploy_id: int, state: str, length: timedelta, **also) -> Taken:
    """Take the deploy's lease for its `state` step for `length`; Taken.NO (falsy) if another
    holds it. `also` are more fields written with it (the safety net's heartbeat, updated_at).
    """
    now = timezone.now()
    claimable = Q(step_lease_until__isnull=True) | Q(step_lease_until__lt=now)
    holder = (
        Deploy.objects.filter(pk=deploy_id, step_lease_until__gte=now)
        .values_list("step_lease_holder", flat=True)
        .first()
    )
    gone = bool(holder) and holder_is_gone(holder)
    if gone:
        claimable |= Q(step_lease_holder=holder)
    taken = (
        Deploy.objects.filter(pk=deploy_id, state=state)
        .filter(claimable)
        .update(step_lease_until=now + length, step_lease_holder=this_process(), **also)
    )
    if not taken:
        return Taken.NO
    return Taken.FROM_GONE if gone else Taken.FREE


def renew(deploy_id: int, state: str, length: timedelta) -> bool:
    """Extend a lease this process holds; False if it is no longer held by it."""
    now = timezone.now()
    return bool(
        Deploy.objects.filter(
            pk=deploy_id, state=state, step_lease_until__isnull=False,
            step_lease_holder=this_process(),
        ).update(step_lease_until=now + length, updated_at=now)
    )  # fmt: skip


def release(deploy_id: int, state: str, **also) -> None:
    """Give up the lease of the `state` step, if this process holds it."""
    Deploy.objects.filter(pk=deploy_id, state=state, step_lease_holder=this_process()).update(
        **FREED, **also
    )
