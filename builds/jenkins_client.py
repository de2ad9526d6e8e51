"""Jenkins through python-jenkins 1.8, for anything that triggers and follows a Jenkins job.

The build backend (builds/jenkins.py) and the legacy deploy target (clusters/targets/legacy.py)
both drive Jenkins jobs through `JenkinsClient`, which knows jobs, queue items and numbered
builds, not what they are for: it has no models and imports nothing of deploys. Every call goes
through `JenkinsClient.calling`, the one place where what python-jenkins raises becomes a
BackendUnavailable (try again) or a BackendRefused (a person must act), with a short one-line
message that never holds the token. The messages name the settings a person would fix
(`SettingNames`: JENKINS_USER... for builds, FC_LEGACY_JENKINS_USER... for legacy jobs).

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
  into that item. Callers put a name of the attempt in the parameters, so a trigger retried
  after a lost answer lands on the same queue item instead of building twice; and a trigger
  whose answer was lost altogether is found again by that parameter (`find_triggered`).
* Jenkins forgets a queue item about 5 minutes after it left the queue (404 afterwards, "does
  not exist" from python-jenkins). The build is then found among the job's recent builds by
  its ``queueId``. If none of them has it, the queue listing is checked: an item still listed
  there is still waiting (a waiting item is never forgotten). Otherwise it left the queue
  without a build we can find (cancelled in Jenkins, or the build deleted or rotated away):
  that is a BackendRefused, as nobody can tell how it ended.
* A queue item that has left the queue may show neither ``executable`` nor ``cancelled`` for a
  moment while its executor creates the build: that is still "waiting", not an error.
* ``cancel_queue`` swallows the 404 for an unknown or forgotten item, so a quiet answer does not
  prove the build never ran; a 500 "Could not cancel" means it already started. Either way, a
  caller reads where the item went afterwards (`follow_queue`) and stops the build it became.
* ``stop`` answers 302 to the build page, which requests follows; that is fine.
* ``progressiveText`` carries its protocol in headers, so it is read through
  ``jenkins_request`` (python-jenkins' session, auth, crumb, timeout and error mapping), which
  returns the whole response. A fresh client attaches its credentials only on its first
  ``jenkins_request``, so no call here bypasses it. Offsets are bytes (``X-Text-Size``); the
  body is decoded as UTF-8 with replacement, and while more text is coming an incomplete
  character at the end is left for the next read. A text size below the offset asked for
  means Jenkins rolled the text over and sent all of it from the start: that whole text is
  returned, with the new size as the next offset.
* The log URL is built from the configured URL, not from the build's ``url``, which comes from
  Jenkins' own root URL setting and may point somewhere this process cannot reach.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import jenkins
import requests

from lib.urls import redact
from monitoring.metrics import counts_errors

from .backends import BackendRefused, BackendUnavailable, LogChunk

if TYPE_CHECKING:
    from requests import Response

# How many of the job's newest builds are searched for a forgotten queue item's build.
RECENT_BUILDS_SEARCHED = 30
_ERRNO_REASON = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


@dataclass(frozen=True)
class SettingNames:
    """The settings that give a client its address and credentials, named in its messages."""

    url: str = "JENKINS_URL"
    user: str = "JENKINS_USER"
    token: str = "JENKINS_TOKEN"  # noqa: S105 - the name of a setting, not a secret


BUILD_SETTINGS = SettingNames()


@dataclass(frozen=True)
class QueuePlace:
    """Where a queue item went: the build it became (number), cancelled, or still waiting."""

    number: int | None = None
    url: str = ""  # the build's URL as Jenkins gives it ('' when not known)
    cancelled: bool = False
    waiting: str = ""  # while it has no build: why, in words ("waiting in Jenkins' queue")


@dataclass(frozen=True)
class Triggered:
    """A trigger found again by one of its parameters: its queue item, and its build if any."""

    queue_id: int
    number: int | None = None
    url: str = ""


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


def parameters_of(entry: dict[str, Any]) -> dict[str, str]:
    """The parameters a queue item or a build was triggered with (its ParametersAction)."""
    found: dict[str, str] = {}
    for action in entry.get("actions") or ():
        if not isinstance(action, dict):
            continue
        for parameter in action.get("parameters") or ():
            if isinstance(parameter, dict) and "name" in parameter:
                found[str(parameter["name"])] = str(parameter.get("value", ""))
    return found


class JenkinsClient:
    """One Jenkins, through python-jenkins; every call maps its errors (see the module)."""

    def __init__(
        self,
        url: str,
        user: str,
        token: str,
        timeout: float,
        *,
        names: SettingNames = BUILD_SETTINGS,
    ) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.user = user
        self.token = token
        self.timeout = timeout
        self.names = names
        self._client: jenkins.Jenkins | None = None

    def __repr__(self) -> str:
        return f"<JenkinsClient {safe_url(self.url)} as {self.user or 'anonymous'}>"

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

    # --------------------------------------------------------------------------- the calls

    def trigger(self, job: str, parameters: dict[str, str]) -> int:
        """Trigger the parameterized job; returns its queue item's id."""
        assert parameters, "empty parameters would make python-jenkins POST /build"
        with self.calling(f"start a build of '{job}'", missing=f"job called '{job}'", job=job):
            return self.client.build_job(job, parameters)

    def build_info(self, job: str, number: int) -> dict[str, Any]:
        with self.calling(
            f"read build #{number} of '{job}'", missing=f"build #{number} of '{job}'"
        ):
            return self.client.get_build_info(job, number)

    def read_log(self, job: str, number: int, offset: int) -> LogChunk:
        """The build's console text from byte `offset` (progressiveText)."""
        url = f"{self.url}{job_path(job)}{number}/logText/progressiveText"
        request = requests.Request("GET", url, params={"start": offset})
        with self.calling(
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

    def cancel_queue(self, queue_id: int) -> None:
        """Ask Jenkins to drop a waiting item; quiet when it has left the queue already (read
        where it went with `follow_queue` to know)."""
        with self.calling(f"cancel queue item {queue_id}", missing=None):
            try:
                self.client.cancel_queue(queue_id)
            except jenkins.JenkinsException as exc:
                if http_status(exc) != 500:
                    raise
                # 500 "Could not cancel run for id N": it left the queue already.

    def stop(self, job: str, number: int) -> None:
        """Stop the build; a build that is gone (404) has nothing left to stop."""
        try:
            with self.calling(
                f"stop build #{number} of '{job}'", missing=f"build #{number} of '{job}'"
            ):
                self.client.stop_build(job, number)
        except BackendRefused as exc:
            if exc.status != 404:
                raise

    # ------------------------------------------------------------------------------- queue

    def follow_queue(self, job: str, queue_id: int) -> QueuePlace:
        """Where the queue item went, found among the job's builds once Jenkins forgot it."""
        try:
            with self.calling(f"read queue item {queue_id}", missing=f"queue item {queue_id}"):
                item = self.client.get_queue_item(queue_id)
        except BackendRefused as exc:
            if exc.status != 404:
                raise
            item = None
        if item is None:  # forgotten: Jenkins drops left items after about 5 minutes
            found = self.find_build(job, lambda info: info.get("queueId") == queue_id)
            if found is None:
                return self._forgotten_without_build(job, queue_id)
            return self._place(job, found.get("number"), found.get("url"))
        if item.get("cancelled"):
            return QueuePlace(cancelled=True)
        executable = item.get("executable")
        if executable and executable.get("number"):
            return self._place(job, executable["number"], executable.get("url"))
        why = item.get("why")
        if why:
            return QueuePlace(waiting=f"waiting in Jenkins' queue: {why}")
        if "LeftItem" in str(item.get("_class", "")):
            return QueuePlace(waiting="leaving Jenkins' queue for an executor")
        return QueuePlace(waiting="waiting in Jenkins' queue")

    def find_build(self, job: str, wanted) -> dict[str, Any] | None:
        """The newest of the job's last RECENT_BUILDS_SEARCHED builds whose info is `wanted`."""
        with self.calling(f"list the builds of '{job}'", missing=f"job called '{job}'"):
            recent = self.client.get_job_info(job).get("builds") or []
        for ref in recent[:RECENT_BUILDS_SEARCHED]:  # newest first
            number = ref.get("number")
            if number is None:
                continue
            try:
                info = self.build_info(job, number)
            except BackendRefused as exc:
                if exc.status == 404:
                    continue  # deleted between the listing and now
                raise
            if wanted(info):
                return info
        return None

    def find_triggered(self, job: str, name: str, value: str) -> Triggered | None:
        """A trigger of `job` whose parameter `name` is `value`: waiting in the queue, or among
        the job's recent builds; None when Jenkins has neither (it was never triggered)."""
        with self.calling("read Jenkins' queue", missing="queue"):
            items = self.client.get_queue_info()
        for item in items:
            task = item.get("task") or {}
            if task.get("name") == job.rsplit("/", 1)[-1] and (
                parameters_of(item).get(name) == value
            ):
                return Triggered(queue_id=int(item["id"]))
        found = self.find_build(job, lambda info: parameters_of(info).get(name) == value)
        if found is None or not isinstance(found.get("queueId"), int):
            return None
        place = self._place(job, found.get("number"), found.get("url"))
        return Triggered(queue_id=found["queueId"], number=place.number, url=place.url)

    def _forgotten_without_build(self, job: str, queue_id: int) -> QueuePlace:
        with self.calling("read Jenkins' queue", missing="queue"):
            items = self.client.get_queue_info()
        for item in items:
            if item.get("id") == queue_id:  # still queued, however its own page answered
                why = item.get("why")
                suffix = f": {why}" if why else ""
                return QueuePlace(waiting=f"waiting in Jenkins' queue{suffix}")
        raise BackendRefused(
            f"Jenkins forgot queue item {queue_id} and none of the last "
            f"{RECENT_BUILDS_SEARCHED} builds of '{job}' came from it: it was cancelled, or "
            "its build deleted, in Jenkins",
            status=404,
        )

    @staticmethod
    def _place(job: str, number: Any, url: Any) -> QueuePlace:
        if not isinstance(number, int):
            raise BackendUnavailable(f"Jenkins gave no usable build number for '{job}'")
        return QueuePlace(number=number, url=url if isinstance(url, str) else "")

    # ------------------------------------------------------------------------------ errors

    @counts_errors("fc_jenkins_errors_total", (BackendRefused, BackendUnavailable))
    @contextlib.contextmanager
    def calling(
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
            # MissingSchema is an InvalidURL: the URL setting itself is wrong.
            raise BackendRefused(
                f"{self.names.url} is not a usable address: '{safe_url(self.url)}'"
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
        names = self.names
        if status == 401:
            return BackendRefused(
                f"Jenkins refused the credentials (401): check {names.user} and {names.token}",
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
                    f"set {names.user} and {names.token}",
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
