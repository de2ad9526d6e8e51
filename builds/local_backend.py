"""The local build backend: the application's build command, run by the worker itself.

start() checks the candidate out, runs the command (builds/local.py) with the build's
parameters as its environment and returns when it is over; the output goes into the Build's
log while it runs. The worker holds the clone for the whole build, so the next candidate is
never checked out from under a build that is still dying. abort() marks the build aborted;
the runner sees that within half a second and kills the command's process group.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models.functions import Substr
from django.utils import timezone

from lib.git import GitError

from .backends import BuildReport, BuildSpec, LogChunk
from .local import build_environment, run_command, split_command
from .models import FINISHED_BUILD_STATUSES, UNFINISHED_BUILD_STATUSES, Build, BuildStatus


class LocalBackend:
    name = "local"
    runs_in_worker = True

    def __init__(self) -> None:
        self._reports: dict[int, BuildReport] = {}

    def start(self, build: Build, spec: BuildSpec) -> None:
        app = build.deploy.application
        try:
            argv = split_command(app.build_command)
            if spec.repository is None:
                raise ValueError("the build was given no repository to check the candidate out of")
            with spec.repository.checked_out(spec.commit_sha) as workdir:
                build.append_log(f"[fatcontroller] $ {app.build_command}\n")
                outcome = run_command(
                    argv,
                    cwd=workdir,
                    env=build_environment(spec.parameters()),
                    timeout=app.build_timeout_seconds,
                    on_output=build.append_log,
                    should_abort=lambda: _beat_and_check_abort(build, spec),
                    flush_every=settings.FC_BUILD_LOG_FLUSH_SECONDS,
                    abort_check_every=0.5,
                )
        except (ValueError, GitError) as exc:
            build.append_log(f"[fatcontroller] could not prepare the build: {exc}\n")
            self._reports[build.pk] = BuildReport(
                finished=True,
                passed=False,
                errored=True,
                summary=f"could not prepare the build: {exc}",
            )
            return
        self._reports[build.pk] = BuildReport(
            finished=True, passed=outcome.passed, aborted=outcome.aborted, summary=outcome.summary
        )

    def status(self, build: Build) -> BuildReport:
        if build.pk in self._reports:
            return self._reports[build.pk]
        build.refresh_from_db(fields=["status", "summary"])
        if build.status in FINISHED_BUILD_STATUSES:
            return BuildReport(
                finished=True,
                passed=build.status == BuildStatus.SUCCEEDED,
                aborted=build.status == BuildStatus.ABORTED,
                errored=build.status == BuildStatus.ERROR,
                summary=build.summary,
            )
        return BuildReport(finished=False, summary="running on the local build runner")

    def read_log(self, build: Build, offset: int) -> LogChunk:
        # The runner writes straight into the Build's log: reading it back is reading the row.
        row = (
            Build.objects.filter(pk=build.pk)
            .annotate(rest=Substr("log", max(offset - build.log_cut_chars, 0) + 1))
            .values("rest", "log_cut_chars")
            .get()
        )
        start = max(offset, row["log_cut_chars"])
        return LogChunk(text=row["rest"], next_offset=start + len(row["rest"]))

    def abort(self, build: Build) -> None:
        Build.objects.filter(pk=build.pk, status__in=UNFINISHED_BUILD_STATUSES).update(
            status=BuildStatus.ABORTED, finished_at=timezone.now(), summary="aborted"
        )


def _beat_and_check_abort(build: Build, spec: BuildSpec) -> bool:
    """Called about twice a second while the build runs: a heartbeat, and should it stop?"""
    Build.objects.filter(pk=build.pk).update(heartbeat_at=timezone.now())
    running = Build.objects.filter(pk=build.pk, status=BuildStatus.RUNNING).exists()
    return not (running and spec.still_wanted())
