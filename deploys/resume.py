"""The safety net, run by beat: nothing is lost when a process dies at the wrong moment.

A failed build whose hold window has passed gives the slot up. A slot left free with
deploys waiting (the handoff died with its process) is handed on, and
a step that has not moved for FC_STALL_AFTER is given to a worker again; steps are
idempotent, so running one twice is safe.
"""

import logging

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from builds.models import Build, BuildStatus

from . import slot
from .models import Application, Deploy
from .pipeline import STEP_TASKS, WATCHING_STATES, expire_holds, schedule_step
from .states import State

log = logging.getLogger(__name__)


def resume_deploys() -> None:
    expire_holds()
    for application_id in Application.objects.filter(locked=False).values_list("pk", flat=True):
        slot.advance(application_id)

    now = timezone.now()
    stalled_before = now - settings.FC_STALL_AFTER
    # A watching step ticks every second or so, touching updated_at: quiet for a minute
    # means its chain of ticks was lost with a worker.
    watch_stalled_before = now - settings.FC_ROLLOUT_STALL_AFTER
    stalled = Deploy.objects.filter(
        Q(state__in=list(WATCHING_STATES), updated_at__lt=watch_stalled_before)
        | Q(state__in=list(set(STEP_TASKS) - WATCHING_STATES), updated_at__lt=stalled_before)
    )
    for deploy in stalled:
        if deploy.state == State.BUILDING:
            running = Build.objects.filter(deploy=deploy, status=BuildStatus.RUNNING)
            if running.filter(heartbeat_at__gte=stalled_before).exists():
                continue  # a long build, alive and well
            if running.filter(queue_id__isnull=False).exists():
                # Handed to a backend that has not answered for a while: the build poller
                # follows it and ends it at its time limit. Starting it again would build twice.
                continue
            # The running build's worker died: its attempt would never finish. Give it
            # back so the step can claim it again.
            running.update(status=BuildStatus.PENDING)
        log.warning("deploy #%s stalled in %s: running its step again", deploy.pk, deploy.state)
        Deploy.objects.filter(pk=deploy.pk).update(updated_at=timezone.now())
        schedule_step(deploy.pk, deploy.state)
