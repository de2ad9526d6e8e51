"""Legacy deploy jobs (a Jenkins job per placement) behind the target interface (base.py).

A placement of kind `legacy` is one parameterized Jenkins job that deploys a service on the
old infrastructure. Its revision is a version string: the tag of the image it is told to run.
A legacy job cannot be asked what it runs, so Fat Controller records every trigger as a
LegacyRun (clusters.models) and the placement runs the version of its last successful run
(Placement.legacy_version, from the config file, before the first).

start triggers the job with the parameters SERVICE, COMMIT, IMAGE, VERSION and FC_REQUEST (the
run's own id, new for each run); restore triggers it again with the version recorded before.
A run is created, and its id written on the ledger as the handle, before the trigger is sent:
a worker that dies before the trigger leaves a run another worker sends; one that dies after
it leaves a run whose trigger is found again by its FC_REQUEST (in the queue, or among the
job's recent builds) before anything is sent a second time; and Jenkins merges a trigger
identical to one still waiting in its queue. So a job is never built twice for one start.

observe follows a run's queue item to its build, reads the build's result and copies its
console log into the run by byte offset (the end kept past FC_BUILD_LOG_MAX_CHARS, like a
build's log). The Jenkins calls and their error mapping are builds/jenkins_client.py's (the
same client the Jenkins build backend uses): passing trouble (down, timeout, 5xx, a stale
crumb) is TargetUnavailable; what a person must fix (401/403, no such job, a job that takes
no parameters) is TargetRefused. The messages name FC_LEGACY_JENKINS_*, never the token.

Settings: FC_LEGACY_JENKINS_URL, FC_LEGACY_JENKINS_USER and FC_LEGACY_JENKINS_TOKEN, each
falling back to its JENKINS_* setting when empty (one Jenkins often does both), and
JENKINS_TIMEOUT.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import F, Value
from django.db.models.functions import Concat, Right
from django.utils import timezone

from builds.backends import BackendRefused, BackendUnavailable
from builds.jenkins_client import JenkinsClient, SettingNames, safe_url

from ..models import LegacyRun, LegacyRunPurpose
from .base import (
    Ledger,
    Observation,
    Progress,
    TargetError,
    TargetRefused,
    TargetUnavailable,
    Watch,
)

SETTINGS = SettingNames(
    url="FC_LEGACY_JENKINS_URL",
    user="FC_LEGACY_JENKINS_USER",
    token="FC_LEGACY_JENKINS_TOKEN",  # noqa: S106 - the name of a setting, not a secret
)
REQUEST_PARAMETER = "FC_REQUEST"
DEPLOYED = "SUCCESS"
# The restore handle of a placement whose start never reached Jenkins: it still runs what it
# ran, so there is nothing to put back ("job run not needed" on the timeline).
NOT_NEEDED = "not needed"
# How many of a failed build's last log lines its reason quotes, and how long they may be.
QUOTED_LINES = 4
QUOTED_CHARS = 400
_BUILD_URL_MAX = LegacyRun._meta.get_field("build_url").max_length or 500


def version_of(image: str) -> str:
    """The image's tag: what follows the last ':' after the last '/' ('' if it has none)."""
    last = image.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else ""


def repository_of(image: str) -> str:
    """The image without its tag ('registry:5000/shop:1.2' -> 'registry:5000/shop')."""
    tag = version_of(image)
    return image[: -len(tag) - 1] if tag else image


@contextlib.contextmanager
def _jenkins() -> Iterator[None]:
    """The client's two errors as the target interface's two."""
    try:
        yield
    except BackendUnavailable as exc:
        raise TargetUnavailable(str(exc)) from exc
    except BackendRefused as exc:
        raise TargetRefused(str(exc)) from exc


class LegacyTarget:
    """One Jenkins's legacy deploy jobs, as a rollout target."""

    start_word = "job run"
    instance_word = "job"

    def __init__(self, url: str, user: str, token: str, timeout: float) -> None:
        self.url, self.user, self.token, self.timeout = url, user, token, timeout
        self._client: JenkinsClient | None = None

    def __repr__(self) -> str:
        return f"<LegacyTarget {safe_url(self.url) if self.url else 'unset'}>"

    @property
    def jenkins(self) -> JenkinsClient:
        """The client, made on first use, so that naming a placement needs no Jenkins."""
        if self._client is None:
            if not self.url:
                raise TargetRefused(
                    "FC_LEGACY_JENKINS_URL (or JENKINS_URL) is not set: give the address of "
                    "the Jenkins that runs the legacy deploy jobs in the environment"
                )
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise TargetRefused(
                    f"FC_LEGACY_JENKINS_URL is not an http(s) address: '{safe_url(self.url)}'"
                )
            self._client = JenkinsClient(
                self.url, self.user, self.token, self.timeout, names=SETTINGS
            )
        return self._client

    # -------------------------------------------------------------- the interface

    def name(self, placement) -> str:
        return f"{placement.service.name} (legacy job {placement.legacy_job})"

    def label(self, revision: str) -> str:
        return revision

    def current(self, placement) -> str:
        last = (
            LegacyRun.objects.filter(placement=placement, result=DEPLOYED)
            .order_by(F("finished_at").desc(nulls_last=True), "-pk")
            .values_list("version", flat=True)
            .first()
        )
        return last or placement.legacy_version or ""

    def image_exists(self, image: str) -> bool:
        # A legacy job pulls (or builds) what it deploys itself, from wherever the old side
        # keeps images: Fat Controller cannot look there, and the job fails if it is missing.
        return True

    def start(self, placement, image: str, ledger: Ledger) -> str:
        self.jenkins  # noqa: B018 - a missing or bad address is refused before anything is written
        version = version_of(image)
        if not version:
            raise TargetRefused(
                f"the image {image} has no tag: a legacy job is told the version to deploy by it"
            )
        if not placement.legacy_job:
            raise TargetRefused(f"{placement.service.name} has a legacy placement with no job")
        if not ledger.revision_before:
            before = self.current(placement)
            if not before:
                raise TargetRefused(
                    f"no version is recorded for {self.name(placement)}, so nothing could be "
                    "restored if this deploy failed: set legacy_version (the version the job "
                    "runs now) on its legacy placement in the application's config file"
                )
            # Written before anything changes: it is what a restore puts back.
            ledger.write(revision_before=before)
        if not ledger.revision_made:
            ledger.write(revision_made=version)
        run = self._run_of(ledger.start_handle)
        if run is None:
            run = LegacyRun.objects.create(
                placement=placement,
                purpose=LegacyRunPurpose.DEPLOY,
                request=uuid.uuid4().hex,
                version=version,
                image=image,
                commit=ledger.commit or "",
            )
            # Written before the trigger: a worker that dies from here on leaves this run for
            # the next to send or to find, never a second one.
            ledger.write(start_handle=str(run.pk))
        self._send(run)
        return str(run.pk)

    def restore(self, placement, revision: str, ledger: Ledger) -> str:
        if ledger.restore_handle == NOT_NEEDED:
            return NOT_NEEDED
        self.jenkins  # noqa: B018 - a missing or bad address is refused before anything is written
        run = self._run_of(ledger.restore_handle)
        if run is None:
            started = self._run_of(ledger.start_handle)
            if not self._reached_jenkins(started) and self.current(placement) == revision:
                ledger.write(restore_handle=NOT_NEEDED)
                return NOT_NEEDED
            if started is not None:
                self._stop_if_running(started)
            repository = repository_of(started.image) if started is not None else ""
            repository = repository or placement.service.application.image_repository
            run = LegacyRun.objects.create(
                placement=placement,
                purpose=LegacyRunPurpose.RESTORE,
                request=uuid.uuid4().hex,
                version=revision,
                image=f"{repository}:{revision}",
                commit=self._commit_of(placement, revision),
            )
            ledger.write(restore_handle=str(run.pk))
        self._send(run)
        return str(run.pk)

    def observe(self, watches: Sequence[Watch]) -> list[Observation]:
        answers = []
        for watch in watches:
            try:
                answers.append(self._observe_one(watch))
            except TargetError as exc:
                answers.append(Observation(Progress.PROGRESSING, error=exc))
        return answers

    # ---------------------------------------------------------------- triggering

    def _send(self, run: LegacyRun) -> None:
        """Trigger the run's build, unless it was triggered already (found by FC_REQUEST)."""
        if run.queue_id is not None:
            return
        job = run.placement.legacy_job
        if run.triggered_at is not None:
            # A trigger was sent and its answer lost (the worker died, or Jenkins did not
            # answer): look for it before sending another.
            with _jenkins():
                found = self.jenkins.find_triggered(job, REQUEST_PARAMETER, run.request)
            if found is not None:
                self._record(run, queue_id=found.queue_id)
                if found.number is not None:
                    self._record_build(run, found.number, found.url)
                return
        self._record(run, triggered_at=timezone.now())
        try:
            with _jenkins():
                queue_id = self.jenkins.trigger(job, self._parameters(run))
        except TargetRefused:
            # Refused outright (401/403, no such job, not parameterized): nothing was queued.
            self._record(run, triggered_at=None)
            raise
        self._record(run, queue_id=queue_id)

    @staticmethod
    def _parameters(run: LegacyRun) -> dict[str, str]:
        return {
            "SERVICE": run.placement.service.name,
            "COMMIT": run.commit,
            "IMAGE": run.image,
            "VERSION": run.version,
            REQUEST_PARAMETER: run.request,
        }

    def _reached_jenkins(self, run: LegacyRun | None) -> bool:
        """Did this run's trigger reach Jenkins? (Looked for when its answer was lost.)"""
        if run is None or run.triggered_at is None:
            return False
        if run.queue_id is not None:
            return True
        try:
            with _jenkins():
                found = self.jenkins.find_triggered(
                    run.placement.legacy_job, REQUEST_PARAMETER, run.request
                )
        except TargetRefused:
            return False  # the job is not there to have run it
        if found is None:
            return False
        self._record(run, queue_id=found.queue_id)
        if found.number is not None:
            self._record_build(run, found.number, found.url)
        return True

    def _stop_if_running(self, run: LegacyRun) -> None:
        """Stop a start's build that has not finished (hung past the phase timeout, or still
        running when another placement failed), so the restore runs after it, not beside it."""
        if run.finished_at is not None or run.queue_id is None:
            return
        job = run.placement.legacy_job
        with _jenkins():
            if run.build_number is None:
                place = self.jenkins.follow_queue(job, run.queue_id)
                if place.number is None and not place.cancelled:
                    self.jenkins.cancel_queue(run.queue_id)
                    place = self.jenkins.follow_queue(job, run.queue_id)
                if place.cancelled:
                    self._finish(run, "CANCELLED")  # Jenkins' word for a left queue item
                    return
                if place.number is None:
                    raise TargetUnavailable(
                        f"Jenkins did not cancel queue item {run.queue_id} of {job}: it is "
                        "still waiting"
                    )
                self._record_build(run, place.number, place.url)
            info = self.jenkins.build_info(job, run.build_number)
            if info.get("result"):
                self._finish(run, info["result"])
                return
            self.jenkins.stop(job, run.build_number)
        # Recorded as Jenkins will end it (Jenkins aborts on the stop), since nobody watches
        # this run again: the deploy page and the history would show it running forever.
        self._finish(run, "ABORTED")

    # ------------------------------------------------------------------ watching

    def _observe_one(self, watch: Watch) -> Observation:
        if watch.handle == NOT_NEEDED:
            return Observation(Progress.OUT, running=1, desired=1)
        run = self._run_of(watch.handle)
        if run is None:
            raise TargetRefused(f"there is no legacy job run {watch.handle!r}")
        if run.finished_at is not None:
            return self._verdict(run)
        job = run.placement.legacy_job
        if run.queue_id is None:
            raise TargetUnavailable(f"job run {run.pk} of {job} has not been sent to Jenkins yet")
        with _jenkins():
            if run.build_number is None:
                place = self.jenkins.follow_queue(job, run.queue_id)
                if place.cancelled:
                    return Observation(
                        Progress.FAILED,
                        running=0,
                        desired=1,
                        reason=f"legacy job {job}: the run of {run.version} was cancelled in "
                        "Jenkins' queue",
                    )
                if place.number is None:
                    return Observation(
                        Progress.PROGRESSING, running=0, desired=1, reason=place.waiting
                    )
                self._record_build(run, place.number, place.url)
            info = self.jenkins.build_info(job, run.build_number)
            self._copy_log(run, job)
        result = info.get("result")
        if not result:
            return Observation(
                Progress.PROGRESSING,
                running=0,
                desired=1,
                reason=f"Jenkins build #{run.build_number} of {job} has not finished",
            )
        self._finish(run, result)
        return self._verdict(run)

    @staticmethod
    def _verdict(run: LegacyRun) -> Observation:
        if run.result == DEPLOYED:
            return Observation(Progress.OUT, running=1, desired=1)
        reason = (
            f"legacy job {run.placement.legacy_job} build #{run.build_number} ended {run.result}"
        )
        quoted = _last_lines(run.log)
        if quoted:
            reason += f": {quoted}"
        return Observation(Progress.FAILED, running=0, desired=1, reason=reason)

    def _copy_log(self, run: LegacyRun, job: str) -> None:
        """Append what is new of the build's console; two observers never append it twice."""
        chunk = self.jenkins.read_log(job, run.build_number, run.log_offset)
        text = chunk.text.replace("\x00", "")
        cap = settings.FC_BUILD_LOG_MAX_CHARS
        rolled_over = chunk.next_offset < run.log_offset  # Jenkins sent all of it again
        grown = Value(text) if rolled_over else Concat(F("log"), Value(text))
        changed = LegacyRun.objects.filter(pk=run.pk, log_offset=run.log_offset).update(
            log=Right(grown, cap), log_offset=chunk.next_offset
        )
        if changed:
            run.refresh_from_db(fields=["log", "log_offset"])

    # ----------------------------------------------------------------- the rows

    @staticmethod
    def _run_of(handle: str) -> LegacyRun | None:
        if not handle or not handle.isdigit():
            return None
        return LegacyRun.objects.select_related("placement__service").filter(pk=int(handle)).first()

    @staticmethod
    def _record(run: LegacyRun, **fields) -> None:
        for name, value in fields.items():
            setattr(run, name, value)
        LegacyRun.objects.filter(pk=run.pk).update(**fields)

    def _record_build(self, run: LegacyRun, number: int, url: str) -> None:
        self._record(run, build_number=number, build_url=url if len(url) <= _BUILD_URL_MAX else "")

    def _finish(self, run: LegacyRun, result: str) -> None:
        self._record(run, result=str(result)[:40], finished_at=timezone.now())

    @staticmethod
    def _commit_of(placement, version: str) -> str:
        """The commit of the run that deployed `version`, when Fat Controller knows it."""
        return (
            LegacyRun.objects.filter(placement=placement, version=version, result=DEPLOYED)
            .exclude(commit="")
            .order_by("-pk")
            .values_list("commit", flat=True)
            .first()
            or ""
        )


def _last_lines(log: str) -> str:
    """The last few lines of a build's console that say something, for a failure's reason."""
    lines = [
        line.strip()
        for line in log.splitlines()
        if line.strip() and not line.startswith("Finished: ")
    ]
    quoted = " / ".join(lines[-QUOTED_LINES:])
    return quoted if len(quoted) <= QUOTED_CHARS else "..." + quoted[-QUOTED_CHARS:]


_local = threading.local()


def target_for(placement) -> LegacyTarget:
    """The legacy target: one per thread and settings (python-jenkins' session keeps a crumb
    and cookies, and is not shared between threads)."""
    key = (
        getattr(settings, "FC_LEGACY_JENKINS_URL", "") or getattr(settings, "JENKINS_URL", ""),
        getattr(settings, "FC_LEGACY_JENKINS_USER", "") or getattr(settings, "JENKINS_USER", ""),
        getattr(settings, "FC_LEGACY_JENKINS_TOKEN", "") or getattr(settings, "JENKINS_TOKEN", ""),
        float(getattr(settings, "JENKINS_TIMEOUT", None) or 10.0),
    )
    cached = getattr(_local, "targets", None)
    if cached is None:
        cached = _local.targets = {}
    if key not in cached:
        cached[key] = LegacyTarget(
            *(part.strip() if isinstance(part, str) else part for part in key)
        )
    return cached[key]
