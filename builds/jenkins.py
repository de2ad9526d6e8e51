"""The Jenkins build backend: hands a build to a parameterized Jenkins job and follows it.

A build is triggered with ``buildWithParameters`` (python-jenkins 1.8), followed through
Jenkins' queue to a numbered build, read back with ``progressiveText`` and stopped with
``stop``/``cancelItem``. The calls themselves, and the mapping of what python-jenkins raises
into a BackendUnavailable (try again) or a BackendRefused (a person must act), are
builds/jenkins_client.py's, shared with the legacy deploy target; its docstring lists the
traps. What is left here is the Build row: which job, what its queue item and number are.

* Jenkins shows a build's ``result`` while ``building`` is still true: the post-build actions,
  where the job's notification step runs, come after the verdict. A result counts as finished,
  so the deploy moves on as soon as the notification arrives. ``duration`` is 0 until the
  post-build actions are over; the summary then leaves it out.
* The parameters name the deploy and the attempt, so a start retried after a lost answer
  lands on the same queue item (Jenkins merges it) instead of building twice.
* A swallowed 404 from ``cancel_queue`` makes "cancelled" and "forgotten" look alike, so
  abort() reads where the item went and stops the build it became.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import jenkins
from django.conf import settings

from lib.durations import in_words

from .backends import BackendRefused, BackendUnavailable, BuildReport, BuildSpec, LogChunk
from .jenkins_client import JenkinsClient, safe_url, split_incomplete_utf8
from .models import Build

__all__ = ["JenkinsBackend", "split_incomplete_utf8"]

_RESULTS_PASSED = {"SUCCESS"}
_URL_FIELD_MAX = Build._meta.get_field("external_url").max_length or 200


class JenkinsBackend:
    """Builds run by a parameterized Jenkins job, named by Application.jenkins_job_name."""

    name = "jenkins"
    runs_in_worker = False

    def __init__(self, url: str, user: str, token: str, timeout: float) -> None:
        self.jenkins = JenkinsClient(url, user, token, timeout)

    @classmethod
    def from_settings(cls) -> JenkinsBackend:
        url = (getattr(settings, "JENKINS_URL", "") or "").strip()
        if not url:
            raise BackendRefused(
                "JENKINS_URL is not set: give Jenkins' address (and JENKINS_USER, "
                "JENKINS_TOKEN) in the environment to build with Jenkins"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BackendRefused(
                f"JENKINS_URL is not an http(s) address: '{safe_url(url)}' "
                "(like https://jenkins.example.com/)"
            )
        return cls(
            url,
            getattr(settings, "JENKINS_USER", "") or "",
            getattr(settings, "JENKINS_TOKEN", "") or "",
            float(getattr(settings, "JENKINS_TIMEOUT", None) or 10.0),
        )

    def __repr__(self) -> str:
        return f"<JenkinsBackend {safe_url(self.url)} as {self.user or 'anonymous'}>"

    @property
    def url(self) -> str:
        return self.jenkins.url

    @property
    def user(self) -> str:
        return self.jenkins.user

    @property
    def timeout(self) -> float:
        return self.jenkins.timeout

    @property
    def client(self) -> jenkins.Jenkins:
        """python-jenkins' client, made once; its timeout applies to every request."""
        return self.jenkins.client

    def _calling(self, action: str, *, missing: str | None, job: str | None = None):
        """The client's error mapping (JenkinsClient.calling), for a call made here."""
        return self.jenkins.calling(action, missing=missing, job=job)

    # ------------------------------------------------------------------------------ the API

    def start(self, build: Build, spec: BuildSpec) -> None:
        queue_id = self.jenkins.trigger(self._job(build), spec.parameters())
        build.queue_id = queue_id
        Build.objects.filter(pk=build.pk).update(queue_id=queue_id)

    def status(self, build: Build) -> BuildReport:
        job = self._job(build)
        if build.build_number is None:
            waiting = self._follow_queue(build, job)
            if waiting is not None:
                return waiting
        number = build.build_number
        info = self.jenkins.build_info(job, number)
        result = info.get("result")
        if not result:
            return BuildReport(finished=False, summary=f"running as Jenkins build #{number}")
        summary = f"Jenkins build #{number} {result}"
        duration = info.get("duration") or 0
        if duration > 0:
            summary += f" after {in_words(duration / 1000)}"
        return BuildReport(
            finished=True,
            passed=result in _RESULTS_PASSED,
            aborted=result == "ABORTED",
            summary=summary,
        )

    def read_log(self, build: Build, offset: int) -> LogChunk:
        if build.build_number is None:
            return LogChunk("", offset)
        return self.jenkins.read_log(self._job(build), build.build_number, offset)

    def abort(self, build: Build) -> None:
        job = self._job(build)
        if build.build_number is None and build.queue_id is not None:
            queue_id = build.queue_id
            self.jenkins.cancel_queue(queue_id)
            # Swallowed 404s make "cancelled" and "forgotten" look alike: see where it went.
            try:
                report = self._follow_queue(build, job)
            except BackendRefused:
                return  # forgotten without a build to find: nothing to stop
            if report is not None and report.finished:
                return  # cancelled in the queue
            if report is not None:
                raise BackendUnavailable(
                    f"Jenkins did not cancel queue item {queue_id}: it is still waiting"
                )
        if build.build_number is None:
            return  # never handed to Jenkins
        self.jenkins.stop(job, build.build_number)  # deleted or never there: nothing to stop

    # ------------------------------------------------------------------------------- queue

    def _follow_queue(self, build: Build, job: str) -> BuildReport | None:
        """Where the queue item went: a report while it has no build, else None once
        build_number and external_url are recorded (on `build` and in the database)."""
        if build.queue_id is None:
            raise BackendRefused("the build has no Jenkins queue item: it was never started")
        place = self.jenkins.follow_queue(job, build.queue_id)
        if place.cancelled:
            return BuildReport(
                finished=True,
                passed=False,
                aborted=True,
                summary="the build was cancelled in Jenkins' queue",
            )
        if place.number is None:
            return BuildReport(finished=False, summary=place.waiting)
        self._record_number(build, place.number, place.url)
        return None

    @staticmethod
    def _record_number(build: Build, number: int, url: str) -> None:
        external_url = url if len(url) <= _URL_FIELD_MAX else ""
        build.build_number = number
        build.external_url = external_url
        Build.objects.filter(pk=build.pk).update(build_number=number, external_url=external_url)

    @staticmethod
    def _job(build: Build) -> str:
        return build.deploy.application.jenkins_job_name
