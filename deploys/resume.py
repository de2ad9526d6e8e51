"""The safety net, run by beat: nothing is lost when a process dies at the wrong moment.

A failed build whose hold window has passed gives the slot up. A slot left free with
deploys waiting (the handoff died with its process) is handed on, and a step that nobody is
working on is given to a worker again; steps are idempotent, so running one twice is safe.

"Nobody is working on it" is read from the step's own signs of life, so each step has the
window that fits it and a lost message costs about a minute, not ten:

* A step at work holds the deploy's step lease and renews it (deploys/steps.py; a rollout
  tick holds it for one tick). A lease that ran out means its worker died: the step is sent
  again at once.
* With no lease, the step is waiting for its message. A message that did not start within
  FC_STALL_AFTER (FC_ROLLOUT_STALL_AFTER for the watching ticks, which run every second)
  was lost: the step is sent again. A step waiting for its retry counts from when the retry
  is due.
* A build keeps its heartbeat: a local build beats twice a second, so one silent for
  FC_STALL_AFTER died with its worker and gets its attempt back; a build handed to Jenkins
  is followed by the build poller instead, never started twice.

Sending again clears the lease and restarts the window, so a step is never sent twice
within one window.
"""

import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from builds.building import reclaim_abandoned_attempt
from builds.models import Build, BuildStatus
from monitoring import metrics

from . import leases, slot
from .dispatch import STEP_TASKS, WATCHING_STATES, send_step
from .models import Application, Deploy
from .pipeline import expire_holds
from .states import State

log = logging.getLogger(__name__)

STEP_STATES = frozenset(STEP_TASKS)
ONE_OFF_STATES = STEP_STATES - WATCHING_STATES


def resume_deploys() -> int:
    """Run the safety net once; returns how many steps it sent again."""
    expire_holds()
    for application_id in Application.objects.filter(locked=False).values_list("pk", flat=True):
        if slot.advance(application_id) is not None:
            # The handoff that should have happened at the holder's end was lost with it.
            metrics.count("fc_safety_net_rescues_total", step="slot")

    resent = 0
    for deploy in stalled_deploys():
        if deploy.state == State.BUILDING and not _build_needs_its_step(deploy):
            continue
        log.warning("deploy #%s stalled in %s: running its step again", deploy.pk, deploy.state)
        changed = Deploy.objects.filter(
            pk=deploy.pk, state=deploy.state, step_lease_until=deploy.step_lease_until
        ).update(updated_at=timezone.now(), **leases.FREED)
        if changed:  # else it moved, or a step took the lease, since we looked
            send_step(deploy.pk, deploy.state)
            metrics.count("fc_safety_net_rescues_total", step=deploy.state)
            resent += 1
    return resent


def stalled_deploys():
    """Deploys in a state with a step, whose step nobody is working on."""
    now = timezone.now()
    quiet = Q(step_lease_until__isnull=True) & (
        Q(state__in=sorted(WATCHING_STATES), updated_at__lt=now - settings.FC_ROLLOUT_STALL_AFTER)
        | Q(state__in=sorted(ONE_OFF_STATES), updated_at__lt=now - settings.FC_STALL_AFTER)
    )
    lease_ran_out = Q(step_lease_until__lt=now)
    return Deploy.objects.filter(state__in=sorted(STEP_STATES)).filter(quiet | lease_ran_out)


def _build_needs_its_step(deploy: Deploy) -> bool:
    """building: is the step missing (a lost message, a dead worker), or is a build at work?"""
    running = Build.objects.filter(deploy=deploy, status=BuildStatus.RUNNING)
    if running.filter(queue_id__isnull=False).exists():
        # Handed to a backend that follows it: the build poller ends it, at its time limit if
        # the backend stays away. Starting it again would build twice.
        return False
    # A local build gone quiet died with its worker: its attempt is given back (a long build
    # that still beats is left alone), and the step is needed if an attempt waits.
    reclaim_abandoned_attempt(deploy, holder_gone=False)
    return deploy.builds.filter(status=BuildStatus.PENDING).exists()
