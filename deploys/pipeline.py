"""The steps a deploy runs through once it holds the slot, one per active state.

Each step is called by a thin Celery task with a deploy that is in the step's state. Steps
are idempotent: one that runs twice (a redelivered task, a resumed deploy) does the same
work and makes the same move. A step never moves a deploy that someone else moved
meanwhile (a cancel): its transition names the state it expects to leave.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from builds.models import Build
from lib.git import GitError, MergeConflict, PushRejected, Repository

from . import dispatch, leases
from .models import Application, Deploy
from .repositories import repository_for
from .rollout import forward as rollout
from .statemachine import IllegalTransition, record_event, transition
from .states import Mode, State

log = logging.getLogger(__name__)


class RetryableStepError(Exception):
    """The step met a passing trouble (the git remote did not answer): run it again later."""


def make_candidate(deploy: Deploy) -> None:
    """merging: merge the branch into the default branch and push it to the candidate ref."""
    app = deploy.application
    leave_merging = frozenset({State.MERGING})
    try:
        head_sha, candidate_sha = repository_for(app).make_candidate(
            deploy.branch,
            deploy.candidate_ref,
            message=f"Merge {deploy.branch} into {app.default_branch} (deploy #{deploy.pk})",
            # The deploy's own time makes the merge commit the same on every run.
            when=deploy.created_at,
        )
    except MergeConflict as exc:
        transition(
            deploy.pk,
            State.MERGE_CONFLICT,
            from_states=leave_merging,
            message=(
                f"{deploy.branch} conflicts with {app.default_branch} in: "
                f"{', '.join(exc.files)}. Merge {app.default_branch} into the branch, "
                "resolve, push, and queue again."
            ),
        )
        return
    except GitError as exc:  # a missing branch, an unreachable remote
        fail_or_retry(deploy, exc, leaving=leave_merging)
        return
    start_build(
        deploy.pk,
        from_states=leave_merging,
        message=f"candidate {candidate_sha[:12]}: {deploy.branch} at {head_sha[:12]} "
        f"merged into {app.default_branch}",
        head_sha=head_sha,
        candidate_sha=candidate_sha,
        commits=_commits_brought(app, candidate_sha),
    )


def _commits_brought(app: Application, candidate_sha: str) -> list[dict]:
    """The diff summary for the deploy page; without it the deploy goes on all the same."""
    try:
        # Against the default branch make_candidate has just fetched: no second fetch.
        return repository_for(app).commits_not_on_default(candidate_sha, fetch=False)
    except GitError as exc:
        log.warning("could not list the commits of %s: %s", candidate_sha[:12], exc)
        return []


def start_build(deploy_id: int, *, from_states, message: str, actor=None, **changes) -> Deploy:
    """Move to building and add the next build attempt, together or not at all."""
    with transaction.atomic():
        deploy, changed = transition(
            deploy_id,
            State.BUILDING,
            actor=actor,
            from_states=from_states,
            message=message,
            **changes,
        )
        if changed:
            add_build_attempt(deploy)
    return deploy


def add_build_attempt(deploy: Deploy) -> Build:
    """The next attempt at building the deploy's candidate; earlier attempts stay as history."""
    return Build.objects.create(
        deploy=deploy,
        attempt=deploy.builds.count() + 1,
        backend=deploy.application.build_backend,
        # One tag per candidate: a retry rebuilds the same commit under the same tag.
        image_tag=deploy.candidate_sha[:12],
    )


def build_finished(deploy: Deploy, build: Build, *, passed: bool, summary: str) -> None:
    """building: move on after a build attempt ended."""

    leave_building = frozenset({State.BUILDING})
    if not passed:
        _build_failed(deploy, build, summary)
        return
    if deploy.mode == Mode.MERGE_ONLY:
        message = f"build {build.attempt} passed; merging without deploying"
    elif rollout.has_rollout_target(deploy.application):
        rollout.start_rollout(deploy, build)
        return
    else:
        # An application with nowhere to deploy yet (one that only merges, or one being set
        # up) merges a green candidate, and its timeline says nothing was deployed.
        message = (
            f"build {build.attempt} passed; no service has a placement to deploy to, "
            "so nothing was deployed before merging"
        )
    transition(deploy.pk, State.MERGING_TO_DEFAULT, from_states=leave_building, message=message)


def _build_failed(deploy: Deploy, build: Build, summary: str) -> None:
    """Retry automatically while the application allows it, then hold the slot for a person."""
    app = deploy.application
    if build.attempt <= app.build_auto_retries:
        retry_automatically(deploy, build, summary)
        return
    held_until = timezone.now() + timedelta(minutes=app.build_hold_minutes)
    transition(
        deploy.pk,
        State.BUILD_FAILED,
        from_states=frozenset({State.BUILDING}),
        message=(
            f"build {build.attempt} failed: {summary}. The slot is held for "
            f"{app.build_hold_minutes} minutes: retry the build or abandon; after that the "
            "slot goes to the next deploy."
        ),
        held_until=held_until,
    )


def retry_automatically(deploy: Deploy, build: Build, summary: str) -> None:
    """Add the next attempt without leaving building; the slot never changes hands."""
    with transaction.atomic():
        locked = Deploy.objects.select_for_update().get(pk=deploy.pk)
        if locked.state != State.BUILDING:
            return
        record_event(
            locked,
            f"build {build.attempt} failed: {summary}. Retrying automatically "
            f"({build.attempt} of {deploy.application.build_auto_retries}).",
        )
        add_build_attempt(locked)
        # The new attempt's step takes the lease itself: the ending one must not keep it out.
        Deploy.objects.filter(pk=deploy.pk).update(updated_at=timezone.now(), **leases.FREED)
        transaction.on_commit(lambda: dispatch.send_step(deploy.pk, State.BUILDING))


def expire_holds() -> int:
    """Failed builds nobody retried within the hold window give the slot up; returns how many."""
    expired = 0
    overdue = Deploy.objects.filter(state=State.BUILD_FAILED, held_until__lt=timezone.now())
    for deploy in overdue.select_related("application"):
        try:
            transition(
                deploy.pk,
                State.ABANDONED,
                from_states=frozenset({State.BUILD_FAILED}),
                message=(
                    f"nobody retried or abandoned the failed build within the "
                    f"{deploy.application.build_hold_minutes}-minute hold window: "
                    "the slot goes to the next deploy"
                ),
            )
        except IllegalTransition:
            continue  # retried or abandoned at the last moment
        expired += 1
    return expired


def merge_to_default(deploy: Deploy) -> None:
    """merging_to_default: push the candidate to the default branch, never with force."""
    app = deploy.application
    final = State.MERGED if deploy.mode == Mode.MERGE_ONLY else State.SUCCEEDED
    leave = frozenset({State.MERGING_TO_DEFAULT})
    repository = repository_for(app)
    try:
        repository.push_to_default(deploy.candidate_sha)
    except PushRejected as exc:
        if _already_merged(repository, deploy.candidate_sha):
            # This step ran before and pushed, then others pushed on top: it is merged.
            transition(
                deploy.pk,
                final,
                from_states=leave,
                message=f"{deploy.candidate_sha[:12]} is already on {app.default_branch}",
            )
            return
        transition(
            deploy.pk,
            State.FAILED,
            from_states=leave,
            message=f"{exc} Queue the branch again to build on the new {app.default_branch}.",
        )
        return
    except GitError as exc:
        fail_or_retry(deploy, exc, leaving=leave)
        return
    transition(
        deploy.pk,
        final,
        from_states=leave,
        message=f"{app.default_branch} is now {deploy.candidate_sha[:12]}",
    )


def fail_or_retry(deploy: Deploy, exc: GitError, *, leaving: frozenset[State]) -> None:
    """Passing trouble is tried again later; anything else fails the deploy with the reason."""
    if exc.retryable:
        raise RetryableStepError(str(exc)) from exc
    transition(deploy.pk, State.FAILED, from_states=leaving, message=str(exc))


def _already_merged(repository: Repository, sha: str) -> bool:
    try:
        return repository.is_on_default(sha)
    except GitError:
        return False


def fail_after_retries(deploy: Deploy, reason: str) -> None:
    """A step that kept meeting passing trouble gives up with the reason, never silently."""
    if deploy.is_final:
        return
    transition(
        deploy.pk,
        State.FAILED,
        from_states=frozenset({deploy.state}),
        message=f"gave up after repeated errors: {reason}",
    )
