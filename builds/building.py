"""Running a deploy's build attempt on its backend, following it, and moving the deploy on.

Three ways in, all idempotent:

* `run_build` (the building step) claims the pending attempt and starts it. The local
  backend runs the whole build there; Jenkins only takes it into its queue.
* `sync_build` asks the backend where a handed-over build is, copies the new part of its
  log and concludes it when it has finished. The Jenkins notification hook and the beat
  poller (`poll_builds`, the safety net for a missed notification) both call it.
* `abort_builds` stops what a cancelled deploy left running.

A build is concluded once: the status write that ends it is conditional on the build still
running, and only the caller whose write changed the row moves the deploy on.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deploys import dispatch
from deploys.models import Deploy
from deploys.repositories import repository_for
from deploys.statemachine import record_event
from deploys.states import State

from . import outcomes
from .backends import (
    BackendError,
    BackendRefused,
    BackendUnavailable,
    BuildReport,
    BuildSpec,
    LogChunk,
    backend_for,
)
from .models import UNFINISHED_BUILD_STATUSES, Build, BuildStatus

log = logging.getLogger(__name__)

# Reads of a finished build's log before concluding it, so the log is whole on the page.
FINAL_LOG_READS = 20


class StartTrouble(Exception):
    """The backend could not take the build now (down, 5xx): the step is tried again later."""


def claim_pending_build(deploy: Deploy) -> Build | None:
    """Take the deploy's pending attempt for this worker; None if another worker has it."""
    build = deploy.builds.filter(status=BuildStatus.PENDING).order_by("-attempt").first()
    if build is None:
        return None
    claimed = Build.objects.filter(pk=build.pk, status=BuildStatus.PENDING).update(
        status=BuildStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now()
    )
    if claimed != 1:
        return None
    build.refresh_from_db()
    return build


def reclaim_abandoned_attempt(deploy: Deploy, *, holder_gone: bool) -> None:
    """Give back a local build whose worker died running it, so this step starts it again.

    Called with the building step's lease in hand: nobody else can be running a local build
    of this deploy now, except a holder whose lease merely ran out, which the heartbeat tells.
    A build handed to a backend (queue_id) is followed there, never started again.
    """
    running = deploy.builds.filter(status=BuildStatus.RUNNING, queue_id__isnull=True)
    if not holder_gone:
        running = running.filter(heartbeat_at__lt=timezone.now() - settings.FC_STALL_AFTER)
    for build in running:
        given_back = Build.objects.filter(pk=build.pk, status=BuildStatus.RUNNING).update(
            status=BuildStatus.PENDING, started_at=None
        )
        if given_back:
            build.append_log(
                "\n[fatcontroller] the worker running this build died: starting it again\n"
            )
            record_event(
                deploy, f"build {build.attempt}: its worker died mid-build; starting it again"
            )


def spec_for(deploy: Deploy, build: Build) -> BuildSpec:
    return BuildSpec(
        deploy_id=deploy.pk,
        attempt=build.attempt,
        commit_sha=deploy.candidate_sha,
        candidate_ref=deploy.candidate_ref,
        branch=deploy.branch,
        image_tag=build.image_tag,
        image_repository=deploy.application.image_repository,
        repository=repository_for(deploy.application),
        still_wanted=lambda: Deploy.objects.filter(pk=deploy.pk, state=State.BUILDING).exists(),
    )


def run_build(deploy: Deploy) -> None:
    """building: start the pending attempt on its backend (and, locally, run it to the end)."""
    build = claim_pending_build(deploy)
    if build is None:
        log.info("deploy #%s has no pending build to run", deploy.pk)
        return
    try:
        backend = backend_for(build.backend)
        backend.start(build, spec_for(deploy, build))
    except BackendRefused as exc:
        report = BuildReport(finished=True, passed=False, errored=True, summary=str(exc))
        conclude(deploy, build, report)
        return
    except BackendUnavailable as exc:
        # Give the attempt back, so the retried step claims it again.
        Build.objects.filter(pk=build.pk, status=BuildStatus.RUNNING).update(
            status=BuildStatus.PENDING, started_at=None
        )
        note_trouble(deploy, build, f"{exc}; trying again shortly")
        raise StartTrouble(str(exc)) from exc

    if backend.runs_in_worker:
        conclude(deploy, build, backend.status(build))
        return
    clear_trouble(deploy, build)
    record_event(
        deploy,
        f"build {build.attempt} handed to {backend.name} "
        f"(queue item {build.queue_id}); waiting for it to start",
    )
    if not Deploy.objects.filter(pk=deploy.pk, state=State.BUILDING).exists():
        # Cancelled while the backend took it: nobody else knows the build exists yet.
        abort_builds(deploy)


def give_up_after_worker_deaths(deploy: Deploy, reason: str) -> None:
    """The build killed the worker running it again and again: it failed, the slot is held."""
    build = deploy.builds.filter(status=BuildStatus.PENDING).order_by("-attempt").first()
    if build is not None:
        report = BuildReport(finished=True, passed=False, errored=True, summary=reason)
        conclude(deploy, build, report)


def give_up_starting(deploy: Deploy, reason: str) -> None:
    """The backend stayed unreachable through every retry: the build failed, the slot is held."""
    build = deploy.builds.filter(status=BuildStatus.PENDING).order_by("-attempt").first()
    if build is None:
        return
    summary = f"could not be started after repeated tries: {reason}"
    report = BuildReport(finished=True, passed=False, errored=True, summary=summary)
    conclude(deploy, build, report)


def sync_build(deploy: Deploy) -> None:
    """building: follow a handed-over build, copy its new log and conclude it when it ended."""
    build = deploy.builds.filter(status=BuildStatus.RUNNING).order_by("-attempt").first()
    if build is None:
        return
    backend = backend_for(build.backend)
    if backend.runs_in_worker:
        return  # the worker running it reports by itself
    known_number = build.build_number
    try:
        report = backend.status(build)
    except BackendError as exc:
        note_trouble(deploy, build, str(exc))
        # A backend that stays away past the build's own time limit leaves nothing to wait for.
        if _over_time(deploy, build):
            timeout = deploy.application.build_timeout_seconds
            summary = (
                f"the build backend did not answer before the build's {timeout} s limit "
                "ran out: its outcome is unknown"
            )
            _stop(deploy, build, backend, summary, errored=True)
        return
    clear_trouble(deploy, build)
    # The log is only for show: a log that cannot be read never holds back a known outcome.
    copy_log_or_say_why(deploy, backend, build, finished=report.finished)
    Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())
    if build.build_number and not known_number:
        record_event(
            deploy,
            f"build {build.attempt} started as {backend.name} build #{build.build_number}",
        )
    if report.finished:
        conclude(deploy, build, report)
    elif _over_time(deploy, build):
        timeout = deploy.application.build_timeout_seconds
        _stop(deploy, build, backend, f"ran over its {timeout} s limit: aborted")


def copy_log_or_say_why(deploy: Deploy, backend, build: Build, *, finished: bool) -> None:
    """Copy the new part of the log; if the backend will not give it, say so on the timeline
    (once per attempt) and go on: the build's result does not depend on it."""
    try:
        copy_log(backend, build, reads=FINAL_LOG_READS if finished else 1)
    except BackendError as exc:
        message = f"build {build.attempt}: its log could not be read from {backend.name}: {exc}"
        if not deploy.events.filter(message=message).exists():
            build.append_log(f"\n[fatcontroller] {message}\n")
            record_event(deploy, message)
            log.warning("deploy #%s: %s", deploy.pk, message)


def copy_log(backend, build: Build, *, reads: int = 1) -> None:
    """Copy the part of the backend's log not copied yet; never the whole log again."""
    for _ in range(reads):
        chunk = backend.read_log(build, build.backend_log_offset)
        if not chunk.text and chunk.next_offset == build.backend_log_offset:
            return
        if chunk.next_offset < build.backend_log_offset:
            # The backend started its log over (Jenkins' rolled-over text): say so, rather
            # than pass a repeat off as new output.
            chunk = LogChunk(
                "\n[fatcontroller] the build backend sent its log again from the start\n"
                + chunk.text,
                chunk.next_offset,
            )
        if not build.append_log(chunk.text, backend_log_offset=chunk.next_offset):
            return  # another sync copied this part meanwhile
        build.backend_log_offset = chunk.next_offset


def conclude(deploy: Deploy, build: Build, report: BuildReport) -> bool:
    """End the attempt with the report and move the deploy on; False if it had ended already."""
    if report.errored:
        status = BuildStatus.ERROR
    elif report.aborted:
        status = BuildStatus.ABORTED
    elif report.passed:
        status = BuildStatus.SUCCEEDED
    else:
        status = BuildStatus.FAILED
    with transaction.atomic():
        ended = Build.objects.filter(pk=build.pk, status__in=UNFINISHED_BUILD_STATUSES).update(
            status=status, finished_at=timezone.now(), summary=report.summary[:500]
        )
        if not ended:
            return False  # a second notification, or the poller got there first
        build.status = status
        if (
            report.aborted
            and not Deploy.objects.filter(pk=deploy.pk, state=State.BUILDING).exists()
        ):
            return True  # we aborted it for a cancel: nothing to move
        outcomes.attempt_finished(deploy, build, passed=bool(report.passed), summary=report.summary)
    return True


def note_trouble(deploy: Deploy, build: Build, message: str) -> None:
    """Tell the timeline about a backend problem once, not on every poll."""
    changed = (
        Build.objects.filter(pk=build.pk)
        .exclude(trouble=message[:500])
        .update(trouble=message[:500])
    )
    if changed:
        record_event(deploy, f"build {build.attempt}: {message}")
        log.warning("deploy #%s build %s: %s", deploy.pk, build.attempt, message)


def clear_trouble(deploy: Deploy, build: Build) -> None:
    if Build.objects.filter(pk=build.pk).exclude(trouble="").update(trouble=""):
        record_event(deploy, f"build {build.attempt}: the build backend answers again")


def _over_time(deploy: Deploy, build: Build) -> bool:
    limit = timedelta(seconds=deploy.application.build_timeout_seconds)
    return build.started_at is not None and timezone.now() - build.started_at > limit


def _stop(deploy: Deploy, build: Build, backend, summary: str, *, errored: bool = False) -> None:
    """End a build that ran out of time: abort it where it runs (if it still answers)."""
    try:
        backend.abort(build)
    except BackendError as exc:
        log.warning("could not abort build %s: %s", build.pk, exc)
    report = BuildReport(finished=True, passed=False, errored=errored, summary=summary)
    conclude(deploy, build, report)


def abort_builds(deploy: Deploy) -> None:
    """Stop every unfinished attempt of a deploy that no longer wants it (a cancel).

    It moves no deploy: the cancel that asked for it already did. (A build that must stop
    while its deploy goes on, one over its time limit, is concluded by sync_build instead.)
    """
    for build in deploy.builds.filter(status__in=UNFINISHED_BUILD_STATUSES):
        if build.status == BuildStatus.PENDING and build.queue_id is None:
            # Never started anywhere: claiming it as aborted keeps a worker from starting it.
            Build.objects.filter(pk=build.pk, status=BuildStatus.PENDING).update(
                status=BuildStatus.ABORTED, finished_at=timezone.now(), summary="cancelled"
            )
            continue
        backend = backend_for(build.backend)
        backend.abort(build)  # BackendUnavailable goes up: the task tries again
        Build.objects.filter(pk=build.pk, status__in=UNFINISHED_BUILD_STATUSES).update(
            status=BuildStatus.ABORTED, finished_at=timezone.now(), summary="aborted: cancelled"
        )
        record_event(deploy, f"build {build.attempt} aborted on {backend.name}")


def poll_builds() -> int:
    """The safety net: follow every handed-over build that is running; returns how many."""
    deploy_ids = list(
        Build.objects.filter(
            status=BuildStatus.RUNNING, deploy__state=State.BUILDING, queue_id__isnull=False
        )
        .values_list("deploy_id", flat=True)
        .distinct()
    )
    for deploy_id in deploy_ids:
        dispatch.send_task("builds.tasks.sync_build", deploy_id)
    return len(deploy_ids)
