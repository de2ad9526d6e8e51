"""Running one build attempt of a deploy's candidate, and moving the deploy on after it."""

import logging

from django.conf import settings
from django.utils import timezone

from deploys.git import GitError
from deploys.models import Deploy
from deploys.pipeline import build_finished, repository_for
from deploys.states import State

from .local import build_environment, run_command, split_command
from .models import Build, BuildStatus

log = logging.getLogger(__name__)


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


def run_build(deploy: Deploy) -> None:
    """building: run the pending attempt with the local runner and move the deploy on."""
    build = claim_pending_build(deploy)
    if build is None:
        log.info("deploy #%s has no pending build to run", deploy.pk)
        return
    app = deploy.application
    try:
        argv = split_command(app.build_command)
        with repository_for(app).checked_out(deploy.candidate_sha) as workdir:
            build.append_log(f"[fatcontroller] $ {app.build_command}\n")
            outcome = run_command(
                argv,
                cwd=workdir,
                env=build_environment(
                    {
                        "FC_DEPLOY_ID": str(deploy.pk),
                        "FC_BUILD_ATTEMPT": str(build.attempt),
                        "FC_CANDIDATE_SHA": deploy.candidate_sha,
                        "FC_CANDIDATE_REF": deploy.candidate_ref,
                        "FC_BRANCH": deploy.branch,
                    }
                ),
                timeout=app.build_timeout_seconds,
                on_output=lambda text: build.append_log(text.replace("\x00", "")),
                should_abort=lambda: _beat_and_check_abort(build, deploy.pk),
                flush_every=settings.FC_BUILD_LOG_FLUSH_SECONDS,
                abort_check_every=0.5,
            )
    except (ValueError, GitError) as exc:
        build.append_log(f"[fatcontroller] could not prepare the build: {exc}\n")
        finish(build, BuildStatus.ERROR)
        build_finished(deploy, build, passed=False, summary=f"could not prepare the build: {exc}")
        return
    if outcome.aborted:
        finish(build, BuildStatus.ABORTED)
        return
    finish(build, BuildStatus.SUCCEEDED if outcome.passed else BuildStatus.FAILED)
    build_finished(deploy, build, passed=outcome.passed, summary=outcome.summary)


def finish(build: Build, status: BuildStatus) -> None:
    Build.objects.filter(pk=build.pk).update(status=status, finished_at=timezone.now())
    build.status = status


def _beat_and_check_abort(build: Build, deploy_id: int) -> bool:
    """Called about once a second while the build runs."""
    Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())
    return not Deploy.objects.filter(pk=deploy_id, state=State.BUILDING).exists()
