"""The Jenkins build backend: hands a build to a parameterized Jenkins job and follows it.

A build is triggered with ``buildWithParameters`` (python-jenkins 1.8), followed through
Jenkins' queue to a numbered build, read back with ``progressiveText`` and stopped with
``stop``/``cancelItem``. Every call goes through `JenkinsBackend._calling`, the one place
where what python-jenkins raises becomes a BackendUnavailable (try again) or a BackendRefused
(a person must act), with a short one-line message that never holds the token.

Traps handled here (tests/jenkins_standin.py describes the Jenkins side):

* python-jenkins keeps the HTTP status only in the text of a plain JenkinsException (401, 403,
  500), raises NotFoundException for 404 and lets the raw ``requests.HTTPError`` escape for
  any other status. Its getters (``get_queue_item``, ``get_build_info``, ``get_job_info``)
  then re-wrap 404 *and* other HTTP errors into "... does not exist", so a 503 looks like a
  404. Nothing is chained with ``from``: `http_status` finds the status on the implicit
  ``__context__`` chain, and the mapping trusts that status, never the wording. Follow-up
  calls are never made inside an ``except`` block, so a later error cannot inherit an earlier
  one's status through that chain.
* Connection refused is a raw ``requests.ConnectionError``, a timeout a
  ``jenkins.TimeoutException``: both are "did not answer". The short reason shown is picked
  out of the exception ("Connection refused"), never the exception text, which holds URLs.
* A job that takes no parameters answers ``buildWithParameters`` with 500 "This build is not
  parameterized!": a person must fix the job, so that 500 is a refusal, not a passing error.
  The parameters are never empty: with none python-jenkins would POST ``/build`` instead.
* python-jenkins fetches the CSRF crumb once per client and keeps it. A 403 "No valid crumb"
  (Jenkins restarted, its web session gone) drops the client, so the next call starts afresh,
  and is reported as passing trouble.
* Jenkins merges a trigger with the same parameters as an item still waiting in its queue
  into that item. The parameters name the deploy and the attempt, so a start retried after a
  lost answer lands on the same queue item instead of building twice.
* Jenkins forgets a queue item about 5 minutes after it left the queue (404 afterwards, "does
  not exist" from python-jenkins). The build is then found among the job's recent builds by
  its ``queueId``. If none of them has it, the queue listing is checked: an item still listed
  there is still waiting (a waiting item is never forgotten). Otherwise it left the queue
  without a build we can find (cancelled in Jenkins, or the build deleted or rotated away):
  that is a BackendRefused, as nobody can tell how it ended.
* A queue item that has left the queue may show neither ``executable`` nor ``cancelled`` for a
  moment while its executor creates the build: that is still "waiting", not an error.
* Jenkins shows a build's ``result`` while ``building`` is still true: the post-build actions,
  where the job's notification step runs, come after the verdict. A result counts as finished,
  so the deploy moves on as soon as the notification arrives. ``duration`` is 0 until the
  post-build actions are over; the summary then leaves it out.
* ``cancel_queue`` swallows the 404 for an unknown or forgotten item, so a quiet answer does not
  prove the build never ran; a 500 "Could not cancel" means it already started. Either way,
  abort() then reads where the item went and stops the build it became.
* ``stop`` answers 302 to the build page, which requests follows; that is fine.
* ``progressiveText`` carries its protocol in headers, so it is read through
  ``jenkins_request`` (python-jenkins' session, auth, crumb, timeout and error mapping), which
  returns the whole response. A fresh client attaches its credentials only on its first
  ``jenkins_request``, so no call here bypasses it. Offsets are bytes (``X-Text-Size``); the
  body is decoded as UTF-8 with replacement, and while more text is coming an incomplete
  character at the end is left for the next read. A text size below the offset asked for
  means Jenkins rolled the text over and sent all of it from the start: that whole text is
  returned, with the new size as the next offset.
* The log URL is built from JENKINS_URL, not from the build's ``url``, which comes from
  Jenkins' own root URL setting and may point somewhere this process cannot reach.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import jenkins
import requests
from django.conf import settings

from lib.durations import in_words
from lib.urls import redact
from monitoring.metrics import counts_errors

from .backends import BackendRefused, BackendUnavailable, BuildReport, BuildSpec, LogChunk
from .models import Build

if TYPE_CHECKING:
    from requests import Response

# How many of the job's newest builds are searched for a forgotten queue item's build.
RECENT_BUILDS_SEARCHED = 30
_RESULTS_PASSED = {"SUCCESS"}
_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_URL_FIELD_MAX = Build._meta.get_field("external_url").max_length or 200


def http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a python-jenkins exception, or None if there was no answer."""
    response = http_response(exc)
    return response.status_code if response is not None else None


def http_response(exc: BaseException) -> Response | None:
    """The first HTTP response on the exception's cause/context chain (python-jenkins does not
    chain with ``from``: the ``requests.HTTPError`` is on the implicit ``__context__``)."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    while seen is not None and id(seen) not in visited:
        visited.add(id(seen))
        response = getattr(seen, "response", None)
        if response is not None:
            return response
        seen = seen.__cause__ or seen.__context__
    return None


def safe_url(url: str) -> str:
    """The URL fit for a message: credentials masked (lib.urls), no query or fragment."""
    parts = urlsplit(url)
    return redact(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))


def job_path(job: str) -> str:
    """The job's path under the root, folders included ("a/b" is job/a/job/b/), quoted."""
    return "".join(f"job/{quote(part, safe='')}/" for part in job.split("/"))


def split_incomplete_utf8(data: bytes) -> tuple[bytes, bytes]:
    """(data up to its last whole UTF-8 character, the incomplete bytes after it)."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    decoder.decode(data, final=False)
    pending = decoder.getstate()[0]
    if not pending:
        return data, b""
    return data[: len(data) - len(pending)], pending


class JenkinsBackend:
    """Builds run by a parameterized Jenkins job, named by Application.jenkins_job_name."""

    name = "jenkins"
    runs_in_worker = False

    def __init__(self, url: str, user: str, token: str, timeout: float) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.user = user
        self.token = token
        self.timeout = timeout
        self._client: jenkins.Jenkins | None = None

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
    def client(self) -> jenkins.Jenkins:
        """python-jenkins' client, made once; its timeout applies to every request."""
        if self._client is None:
            self._client = jenkins.Jenkins(
                self.url,
                username=self.user or None,
                password=self.token or None,
                timeout=self.timeout,
            )
        return self._client

    # ------------------------------------------------------------------------------ the API

    def start(self, build: Build, spec: BuildSpec) -> None:
        job = self._job(build)
        parameters = spec.parameters()
        assert parameters, "empty parameters would make python-jenkins POST /build"
        with self._calling(f"start a build of '{job}'", missing=f"job called '{job}'", job=job):
            queue_id = self.client.build_job(job, parameters)
        build.queue_id = queue_id
        Build.objects.filter(pk=build.pk).update(queue_id=queue_id)

    def status(self, build: Build) -> BuildReport:
        job = self._job(build)
        if build.build_number is None:
            waiting = self._follow_queue(build, job)
            if waiting is not None:
                return waiting
        number = build.build_number
        with self._calling(
            f"read build #{number} of '{job}'", missing=f"build #{number} of '{job}'"
        ):
            info = self.client.get_build_info(job, number)
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
        job, number = self._job(build), build.build_number
        url = f"{self.url}{job_path(job)}{number}/logText/progressiveText"
        request = requests.Request("GET", url, params={"start": offset})
        with self._calling(
            f"read the log of build #{number} of '{job}'",
            missing=f"log for build #{number} of '{job}'",
        ):
            response = self.client.jenkins_request(request)
            body = response.content
        size_header = response.headers.get("X-Text-Size", "")
        size = int(size_header) if size_header.isdigit() else None
        if size is None:  # not Jenkins' protocol (a proxy?): count what came
            size = offset + len(body)
        if response.headers.get("X-More-Data", "").lower() == "true":
            # More is coming: keep a character cut in two for the next read.
            body, pending = split_incomplete_utf8(body)
            size -= len(pending)
        # size < offset: Jenkins rolled the text over and sent all of it; it is returned whole.
        return LogChunk(body.decode("utf-8", errors="replace"), size)

    def abort(self, build: Build) -> None:
        job = self._job(build)
        if build.build_number is None and build.queue_id is not None:
            queue_id = build.queue_id
            with self._calling(f"cancel queue item {queue_id}", missing=None):
                try:
                    self.client.cancel_queue(queue_id)
                except jenkins.JenkinsException as exc:
                    if http_status(exc) != 500:
                        raise
                    # 500 "Could not cancel run for id N": it left the queue already.
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
        number = build.build_number
        try:
            with self._calling(
                f"stop build #{number} of '{job}'", missing=f"build #{number} of '{job}'"
            ):
                self.client.stop_build(job, number)
        except BackendRefused as exc:
            if exc.status != 404:
                raise
            # Deleted or never there: nothing left to stop.

    # ------------------------------------------------------------------------------- queue

    def _follow_queue(self, build: Build, job: str) -> BuildReport | None:
        """Where the queue item went: a report while it has no build, else None once
        build_number and external_url are recorded (on `build` and in the database)."""
        queue_id = build.queue_id
        if queue_id is None:
            raise BackendRefused("the build has no Jenkins queue item: it was never started")
        try:
            with self._calling(f"read queue item {queue_id}", missing=f"queue item {queue_id}"):
                item = self.client.get_queue_item(queue_id)
        except BackendRefused as exc:
            if exc.status != 404:
                raise
            item = None
        if item is None:  # forgotten: Jenkins drops left items after about 5 minutes
            found = self._find_build_by_queue_id(job, queue_id)
            if found is None:
                return self._forgotten_without_build(job, queue_id)
            self._record_number(build, found.get("number"), found.get("url"))
            return None
        if item.get("cancelled"):
            return BuildReport(
                finished=True,
                passed=False,
                aborted=True,
                summary="the build was cancelled in Jenkins' queue",
            )
        executable = item.get("executable")
        if executable and executable.get("number"):
            self._record_number(build, executable["number"], executable.get("url"))
            return None
        why = item.get("why")
        if why:
            return BuildReport(finished=False, summary=f"waiting in Jenkins' queue: {why}")
        if "LeftItem" in str(item.get("_class", "")):
            return BuildReport(finished=False, summary="leaving Jenkins' queue for an executor")
        return BuildReport(finished=False, summary="waiting in Jenkins' queue")

    def _find_build_by_queue_id(self, job: str, queue_id: int) -> dict[str, Any] | None:
        with self._calling(f"list the builds of '{job}'", missing=f"job called '{job}'"):
            recent = self.client.get_job_info(job).get("builds") or []
        for ref in recent[:RECENT_BUILDS_SEARCHED]:  # newest first
            number = ref.get("number")
            if number is None:
                continue
            try:
                with self._calling(
                    f"read build #{number} of '{job}'", missing=f"build #{number} of '{job}'"
                ):
                    info = self.client.get_build_info(job, number)
            except BackendRefused as exc:
                if exc.status == 404:
                    continue  # deleted between the listing and now
                raise
            if info.get("queueId") == queue_id:
                return info
        return None

    def _forgotten_without_build(self, job: str, queue_id: int) -> BuildReport:
        with self._calling("read Jenkins' queue", missing="queue"):
            items = self.client.get_queue_info()
        for item in items:
            if item.get("id") == queue_id:  # still queued, however its own page answered
                why = item.get("why")
                suffix = f": {why}" if why else ""
                return BuildReport(finished=False, summary=f"waiting in Jenkins' queue{suffix}")
        raise BackendRefused(
            f"Jenkins forgot queue item {queue_id} and none of the last "
            f"{RECENT_BUILDS_SEARCHED} builds of '{job}' came from it: it was cancelled, or "
            "its build deleted, in Jenkins",
            status=404,
        )

    def _record_number(self, build: Build, number: Any, url: Any) -> None:
        if not isinstance(number, int):
            raise BackendUnavailable(
                f"Jenkins gave no usable build number for '{self._job(build)}'"
            )
        external_url = url if isinstance(url, str) and len(url) <= _URL_FIELD_MAX else ""
        build.build_number = number
        build.external_url = external_url
        Build.objects.filter(pk=build.pk).update(build_number=number, external_url=external_url)

    # ------------------------------------------------------------------------------ errors

    @staticmethod
    def _job(build: Build) -> str:
        return build.deploy.application.jenkins_job_name

    @counts_errors("fc_jenkins_errors_total", (BackendRefused, BackendUnavailable))
    @contextlib.contextmanager
    def _calling(
        self, action: str, *, missing: str | None, job: str | None = None
    ) -> Iterator[None]:
        """Map what python-jenkins and requests raise into the backend's two errors.

        `action` says what was being done ("read build #3 of 'x'"); `missing` what a 404
        means is not there (None: a 404 is not expected and is a plain refusal); `job` is
        given when starting a build, where a 400 or a 500 "not parameterized" is the job's.
        """
        try:
            yield
        except (BackendRefused, BackendUnavailable):
            raise
        except (
            requests.ConnectionError,
            requests.Timeout,
            jenkins.TimeoutException,
            TimeoutError,  # socket.timeout
            ConnectionError,
        ) as exc:
            raise BackendUnavailable(
                f"Jenkins at {safe_url(self.url)} did not answer: {self._reason(exc)}"
            ) from exc
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema) as exc:
            # MissingSchema is an InvalidURL: JENKINS_URL itself is wrong.
            raise BackendRefused(
                f"JENKINS_URL is not a usable address: '{safe_url(self.url)}'"
            ) from exc
        except (jenkins.JenkinsException, requests.RequestException, ValueError, KeyError) as exc:
            # ValueError, KeyError: an answer that is not Jenkins' JSON (a proxy's page?).
            raise self._mapped(exc, action, missing, job) from exc

    def _mapped(
        self, exc: BaseException, action: str, missing: str | None, job: str | None
    ) -> BackendRefused | BackendUnavailable:
        response = http_response(exc)
        if response is None:
            # No HTTP error behind it: an empty or unreadable answer (a proxy's page?).
            return BackendUnavailable(
                f"Jenkins gave an answer that could not be used when asked to {action}: "
                f"{self._first_line(exc)}"
            )
        status = response.status_code
        body = self._text_of(response)
        if status == 401:
            return BackendRefused(
                "Jenkins refused the credentials (401): check JENKINS_USER and JENKINS_TOKEN",
                status=401,
            )
        if status == 403:
            if "No valid crumb" in body:
                self._client = None  # a stale crumb: the next call fetches a new one
                return BackendUnavailable(
                    f"Jenkins refused the CSRF crumb (403) when asked to {action}; "
                    "a new one is fetched on the next try",
                    status=403,
                )
            if response.headers.get("X-You-Are-Authenticated-As") == "anonymous":
                return BackendRefused(
                    "Jenkins treated the request as anonymous (403): "
                    "set JENKINS_USER and JENKINS_TOKEN",
                    status=403,
                )
            return BackendRefused(
                f"Jenkins denied access (403): the user '{self.user or 'anonymous'}' lacks "
                f"permission to {action}",
                status=403,
            )
        if status == 404:
            what = missing or f"page for the request to {action}"
            return BackendRefused(f"Jenkins has no {what}", status=404)
        if job is not None and status == 500 and "not parameterized" in body:
            return BackendRefused(
                f"Jenkins job '{job}' takes no parameters: make it a parameterized job",
                status=500,
            )
        if job is not None and status == 400:
            return BackendRefused(
                f"Jenkins refused the build's parameters (400): is '{job}' a parameterized job?",
                status=400,
            )
        if status >= 500 or status in (408, 429):
            return BackendUnavailable(
                f"Jenkins answered {status} when asked to {action}", status=status
            )
        return BackendRefused(f"Jenkins answered {status} when asked to {action}", status=status)

    @staticmethod
    def _text_of(response: Response) -> str:
        try:
            return response.text[:4000]
        except Exception:  # noqa: BLE001 - a body that cannot be read says nothing
            return ""

    def _reason(self, exc: BaseException) -> str:
        """A short reason for a failed connection, without the URLs the exception holds."""
        if isinstance(exc, (requests.Timeout, jenkins.TimeoutException, TimeoutError)):
            return f"no answer within {self.timeout:g} s"
        match = _ERRNO_REASON.search(str(exc))
        if match:
            return match.group(1).strip().rstrip(".")
        text = str(exc).lower()
        for phrase in ("connection refused", "connection reset", "remote end closed"):
            if phrase in text:
                return phrase
        if "ssl" in text or "certificate" in text:
            return "TLS handshake failed"
        return "the connection failed"

    def _first_line(self, exc: BaseException) -> str:
        line = (str(exc).splitlines() or [type(exc).__name__])[0]
        line = line.replace(self.url, safe_url(self.url))
        if self.token:
            line = line.replace(self.token, "***")
        return line[:160]
