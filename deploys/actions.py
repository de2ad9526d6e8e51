"""What a person can do to deploys: queue, cancel, abandon, retry a build, restore a release;
and which of these a deploy offers now (allowed_actions, for pages and API alike).

Views and the API call these and hold no logic of their own. Bad input raises
DeployRequestError (field -> messages) and changes nothing, text with a NUL or a lone
surrogate included (fatcontroller.text decides), before any query or git command sees it; a
button pressed in the wrong state raises IllegalTransition; one the person's role does not
allow raises roles.NotAllowed (a 403), before anything else is looked at or changed.
"""

from django.db import IntegrityError, transaction

from accounts import audit
from builds.models import UNFINISHED_BUILD_STATUSES
from fatcontroller.text import text_problem
from lib.git import GitError, InvalidBranchName, validate_branch_name

from . import dispatch, roles, slot
from .models import Application, Deploy, RolloutStatus, ServiceRollout
from .pipeline import start_build
from .repositories import repository_for
from .statemachine import transition
from .states import ACTIVE_STATES, MEANING, Action, Mode, State, states_allowing

# A restore is queued by restore(), from the release it puts back.
QUEUEABLE_MODES = (Mode.DEPLOY.value, Mode.MERGE_ONLY.value)
CANCELLABLE = states_allowing(Action.CANCEL)


def allowed_actions(deploy: Deploy, user) -> frozenset[Action]:
    """The buttons `deploy` offers `user` now: what its state allows (states.MEANING), but a
    restore only of a release that rolled something out.

    Only those the person's role allows (roles.py), for pages and API at once.
    """
    allowed = MEANING[State(deploy.state)].actions
    if Action.RESTORE in allowed and not _shipped(deploy):
        allowed -= {Action.RESTORE}
    return frozenset(a for a in allowed if roles.may(user, RULE_OF[a], deploy))


# The rule (roles.py) of each button.
RULE_OF = {
    Action.CANCEL: "cancel",
    Action.ABANDON: "abandon",
    Action.RETRY_BUILD: "retry_build",
    Action.RESTORE: "restore",
}


def _shipped(release: Deploy) -> list[ServiceRollout]:
    # Read through .all(), so a page that prefetched the rollouts asks nothing more.
    return [r for r in release.rollouts.all() if r.status == RolloutStatus.DONE]


class DeployRequestError(Exception):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))


def queue_deploy(*, application: str, branch: str, mode: str, requester, note: str = "") -> Deploy:
    """Queue `branch` of the application with slug `application`; returns the new deploy."""
    # First, and alone: the checks below query with these strings, and PostgreSQL cannot
    # take a NUL or a surrogate (the API's parser refuses them already; a page's form too).
    text_errors = {
        field: [problem]
        for field, value in (
            ("application", application),
            ("branch", branch),
            ("mode", mode),
            ("note", note),
        )
        if (problem := text_problem(value))
    }
    if text_errors:
        raise DeployRequestError(text_errors)
    errors: dict[str, list[str]] = {}
    app = Application.objects.filter(slug=application).first()
    if app is None:
        errors["application"] = [f"There is no application called '{application}'."]
    else:
        roles.check(requester, "queue", app)
    if mode not in QUEUEABLE_MODES:
        errors["mode"] = [f"Mode must be one of: {', '.join(QUEUEABLE_MODES)}."]
    try:
        validate_branch_name(branch)
    except InvalidBranchName as exc:
        errors["branch"] = [str(exc)]
    if len(note) > 500:
        errors["note"] = ["A note is at most 500 characters."]
    if not errors:
        branch_error = _branch_problem(app, branch)
        if branch_error:
            errors["branch"] = [branch_error]
    if errors:
        raise DeployRequestError(errors)

    try:
        with transaction.atomic():
            deploy = Deploy.objects.create(
                application=app, branch=branch, mode=mode, requester=requester, note=note
            )
            slot.record_queued(deploy)
            audit.record(
                requester,
                audit.QUEUE,
                application=app,
                subject=f"deploy #{deploy.pk}",
                change={"branch": branch, "mode": mode, "note": note},
            )
    except IntegrityError:
        # Two clicks raced past the check below; the constraint caught the second.
        raise DeployRequestError({"branch": [_already_active(app, branch)]}) from None
    transaction.on_commit(lambda: slot.advance(app.pk))
    return deploy


def _branch_problem(app: Application, branch: str) -> str | None:
    if branch == app.default_branch:
        return f"{branch} is the default branch: queue a branch to merge into it."
    if Deploy.objects.filter(application=app, branch=branch, state__in=ACTIVE_STATES).exists():
        return _already_active(app, branch)
    try:
        if not repository_for(app).branch_exists(branch):
            return f"There is no branch '{branch}' on {app.slug}'s git remote."
    except GitError as exc:
        return f"Could not check the branch on the git remote: {exc}"
    return None


def _already_active(app: Application, branch: str) -> str:
    existing = Deploy.objects.filter(
        application=app, branch=branch, state__in=ACTIVE_STATES
    ).first()
    number = f" as deploy #{existing.pk}" if existing else ""
    return f"{branch} is already queued or in progress{number}."


def cancel(deploy: Deploy, *, actor) -> Deploy:
    """Cancel a deploy that has not started deploying; a running build is aborted."""
    roles.check(actor, "cancel", deploy)
    with transaction.atomic():
        deploy, changed = transition(
            deploy.pk,
            State.CANCELLED,
            actor=actor,
            from_states=CANCELLABLE,
            message=f"cancelled by {actor}",
        )
        if changed:
            _audit(actor, audit.CANCEL, deploy)
        if changed and deploy.builds.filter(status__in=UNFINISHED_BUILD_STATUSES).exists():
            deploy_id = deploy.pk
            transaction.on_commit(
                lambda: dispatch.send_task("builds.tasks.abort_builds", deploy_id)
            )
    return deploy


def abandon(deploy: Deploy, *, actor) -> Deploy:
    """Give up on a failed build and hand the slot on."""
    roles.check(actor, "abandon", deploy)
    with transaction.atomic():
        deploy, changed = transition(
            deploy.pk,
            State.ABANDONED,
            actor=actor,
            from_states=states_allowing(Action.ABANDON),
            message=f"abandoned by {actor} after a failed build",
        )
        if changed:
            _audit(actor, audit.ABANDON, deploy)
    return deploy


def _audit(actor, action: str, deploy: Deploy, **change) -> None:
    audit.record(
        actor,
        action,
        application=deploy.application,
        subject=f"deploy #{deploy.pk}",
        change={"state": deploy.state, **change},
    )


def retry_build(deploy: Deploy, *, actor) -> Deploy:
    """Build the same candidate again, keeping the slot and the history."""
    roles.check(actor, "retry_build", deploy)
    with transaction.atomic():
        before = deploy.state
        after = start_build(
            deploy.pk,
            actor=actor,
            from_states=states_allowing(Action.RETRY_BUILD),
            message=f"{actor} asked for the build to run again",
            held_until=None,
        )
        if after.state != before:
            _audit(actor, audit.RETRY, after, was=before)
    return after


def restore(release: Deploy, *, actor) -> Deploy:
    """Queue a deploy of its own that puts back the revisions `release` rolled out."""
    roles.check(actor, "restore", release)
    if release.state not in states_allowing(Action.RESTORE):
        raise DeployRequestError(
            {"deploy": [f"Deploy #{release.pk} did not succeed: only a release can be restored."]}
        )
    shipped = _shipped(release)
    if not shipped:
        raise DeployRequestError(
            {"deploy": [f"Deploy #{release.pk} rolled nothing out to ECS: nothing to restore."]}
        )
    try:
        with transaction.atomic():
            restoring = Deploy.objects.create(
                application=release.application,
                branch=f"restore-{release.pk}",
                mode=Mode.RESTORE,
                requester=actor,
                restore_of=release,
                candidate_sha=release.candidate_sha,
                note=f"restore deploy #{release.pk} ({release.branch})",
            )
            ServiceRollout.objects.bulk_create(
                ServiceRollout(
                    deploy=restoring,
                    placement_id=done.placement_id,
                    phase=done.phase,
                    image=done.image,
                    revision_made=done.revision_made,
                )
                for done in shipped
            )
            slot.record_queued(restoring)
            audit.record(
                actor,
                audit.RESTORE,
                application=release.application,
                subject=f"deploy #{release.pk}",
                change={"restoring": restoring.pk},
            )
    except IntegrityError:
        raise DeployRequestError(
            {"deploy": [f"A restore of deploy #{release.pk} is already queued or running."]}
        ) from None
    application_id = release.application_id
    transaction.on_commit(lambda: slot.advance(application_id))
    return restoring
