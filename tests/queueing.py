"""Queueing deploys in tests as a person does: through actions.queue_deploy, then (for the
tests that drive the pipeline themselves) running every step it asks for until it rests."""

from deploys import actions
from deploys.models import Deploy
from deploys.states import Mode


def queue(application, user, branch, mode=Mode.MERGE_ONLY, note="") -> Deploy:
    return actions.queue_deploy(
        application=application.slug, branch=branch, mode=mode, requester=user, note=note
    )


def queue_and_drive(application, user, branch, drive, django_capture_on_commit_callbacks, **kw):
    """Queue `branch` and drive the pipeline until it rests; returns the deploy as it is then."""
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue(application, user, branch, **kw)
    drive()
    deploy.refresh_from_db()
    return deploy
