"""A stand-in Jenkins: an HTTP server on 127.0.0.1 that answers like Jenkins 2.462.

No real Jenkins can be installed here, so the Jenkins backend is tested against this server with
the real python-jenkins 1.8 client. It speaks the parts of Jenkins' REST API that a deploy
orchestrator uses, with Jenkins' own status codes, headers, JSON shapes and error pages::

    with JenkinsStandin() as jenkins_server:
        server = jenkins.Jenkins(jenkins_server.url, "fatcontroller", "s3cret-token", timeout=5)
        queue_id = server.build_job("demo-shop", {"BRANCH": "main"})

The tests run it in their own process (tests/jenkins_standin.py re-exports it from here); the
embedded default runs it as a process of its own, `manage.py runjenkins`, on a port of its own
with credentials made up for the run, as the legacy side of the demo's migration. It lives in
devtools/ for that, and production code never imports it.

How it mirrors Jenkins (read this before trusting a result)
------------------------------------------------------------
* Authentication: HTTP Basic with the configured user and API token. Wrong credentials answer
  401 with ``WWW-Authenticate: Basic realm="Jenkins"`` and "Invalid password/token for user: X",
  on every path, ``/`` included. *No* credentials answer **403** "Authentication required"
  (``X-You-Are-Authenticated-As: anonymous``), not 401: that is what Jenkins'
  HudsonAuthenticationEntryPoint does for anonymous requests. Only ``/`` (while
  ``anonymous_read_root`` is true) and ``/whoAmI/`` are readable anonymously.
  ``set_forbidden(True)`` makes the valid user lack Overall/Read: 403 "fatcontroller is missing
  the Overall/Read permission" everywhere except ``/whoAmI/`` (an UnprotectedRootAction).
* CSRF: every POST needs ``Jenkins-Crumb: <crumb>`` from ``/crumbIssuer/api/json``, or 403 "No
  valid crumb was included in the request". As in Jenkins since 2.176.2 the crumb is bound to the
  web session: the crumb issuer sets a ``JSESSIONID.*`` cookie and the POST must send it back
  (python-jenkins' session keeps cookies, so it works; a bare ``requests.post`` with a crumb but
  without the cookie is refused). Real Jenkins (since 2.96) exempts requests authenticated with
  an *API token* from the crumb check altogether; set ``csrf_exempt_api_token = True`` for that.
  The default is the stricter password-style behaviour, which python-jenkins handles anyway.
* Queue: ``buildWithParameters`` answers 201 with ``Location: <root>queue/item/<n>/``. An item is
  a ``Queue$WaitingItem`` during its quiet period (``queue_delay``), a ``Queue$BlockedItem`` while
  an earlier build of the same job runs (jobs do not run concurrently, as in Jenkins' default), a
  ``Queue$BuildableItem`` while all ``executors`` are busy, then a ``Queue$LeftItem`` with
  ``executable`` (or ``cancelled: true``). Jenkins forgets a left item after 5 minutes
  (``queue_item_ttl``), then 404. A trigger with the *same parameters* as an item still waiting
  in the queue is merged into it: the same queue id comes back, and only one build runs. Every
  build's JSON carries ``queueId``, which survives the queue item.
* Parameters: jobs accept any parameters unless ``define_parameters(job, {...})`` gives them
  definitions; then, like Jenkins, undefined parameters are silently dropped and missing ones take
  their defaults. ``define_parameters(job, None)`` makes the job unparameterized:
  ``buildWithParameters`` then fails with 500 "This build is not parameterized!". A POST to
  ``/build`` (what python-jenkins sends when ``parameters`` is empty or None) on a parameterized
  job answers 400 "Nothing is submitted", as Stapler does.
* Builds: number assigned when the item leaves the queue; log written progressively over
  ``build_seconds`` beginning "Started by user fatcontroller". What a build does is the job's
  ``plan`` (an outcome per build, in order) or, for a job given a ``script``, what the script
  says once it has read the build's parameters, as a job's shell step decides from its
  parameters: a callable ``(parameters) -> Script | outcome``, called as the build starts, on a
  thread of its own and outside the stand-in's lock (it may take its time, say to ask another
  server; the build is running meanwhile, as a shell step is), whose ``Script`` gives the
  outcome, the console lines and how long the steps take. A script that raises fails its build
  with the error in the console (and in ``callback_errors``). When the steps are done the build
  enters post-production, as a Jenkins build does while its post-build actions run: the API
  already shows ``result`` but still ``building: true``, and the console has no "Finished:" line
  yet. ``on_build_finished`` callbacks run in that phase (they stand for the job's notification
  step, which runs as a post-build action); when they return, "Finished: <RESULT>" is written and
  ``building`` turns false. ``estimatedDuration`` is -1 until a build has completed.
* ``/stop`` answers 302 to the build page (or the ``Referer``) at once; the build turns ABORTED
  on the next scheduler tick, with "Build was aborted" / "Aborted by fatcontroller".
* ``progressiveText``: bytes from ``start`` with ``X-Text-Size`` and, while building,
  ``X-More-Data: true``. A ``start`` past the end is treated as 0 ("text rolled over") and the
  whole log comes back, as Jenkins' LargeText does.
* Not modelled: ``tree=``/``depth=`` filters (full objects are always returned), folders, views,
  XML API, pipelines. ``down()`` is the network going away: builds keep running behind it.

What python-jenkins 1.8 does with the answers (traps for the backend author)
-----------------------------------------------------------------------------
``Jenkins.jenkins_request`` turns ``requests.HTTPError`` into:

* 401, 403, 500: ``jenkins.JenkinsException("Error in request. Possibly authentication failed
  [<status>]: <reason>\\n<response body>")``. The status is only in the message text.
* 404: ``jenkins.NotFoundException("Requested item could not be found")``.
* any other status (400, 409, 502, 503, ...): the ``requests.exceptions.HTTPError`` itself is
  re-raised, *not* a JenkinsException (``build_job``, ``stop_build`` and ``jenkins_request`` let
  it escape like that).
* connection refused / reset: ``requests.exceptions.ConnectionError``, not wrapped. Timeouts:
  ``jenkins.TimeoutException``.

Then many getters re-wrap: ``get_queue_item``, ``get_build_info``, ``get_job_info`` and
``get_build_console_output`` catch NotFoundException *and* HTTPError and raise a plain
``JenkinsException("queue number[7] does not exist")`` / ``"job[x] number[3] does not exist"``,
so a 503 looks exactly like a 404 there (a 401/403/500 JenkinsException passes through
unchanged). ``get_whoami`` turns HTTPError (503...) into ``BadHTTPException("Error
communicating with server[...]")``; ``get_version`` bypasses jenkins_request, so *every* error
status (401 and 403 too) becomes that BadHTTPException. ``get_build_console_output`` also
raises "does not exist" for an *empty* 200 body (a started Jenkins build never has one).
``cancel_queue`` swallows the 404 Jenkins sends for an unknown or forgotten item, but the 500
"Could not cancel run for id N" for an item that has already started (and is still
remembered) raises a JenkinsException.

None of these use ``raise ... from``: ``exc.__cause__`` is always None. The HTTP status is
reachable through the implicit ``__context__`` chain: the first ``requests.HTTPError`` found
walking ``exc.__context__`` (one or two levels deep) has ``.response.status_code``::

    def http_status(exc: BaseException) -> int | None:
        seen = exc
        while seen is not None:
            response = getattr(seen, "response", None)
            if response is not None:
                return response.status_code
            seen = seen.__cause__ or seen.__context__
        return None

Other traps:

* ``Jenkins(url, user, token).get_version()`` on a fresh client sends **no credentials**: auth
  is attached to ``server._session`` lazily by the first ``jenkins_request``/``jenkins_open``.
  It only works because Jenkins (and this stand-in, by default) lets anonymous read ``/``; a
  locked-down Jenkins answers 403 and get_version raises BadHTTPException. For the same reason
  ``server._session.get(...)`` is unauthenticated until some other call has gone through.
* ``jenkins_open`` returns only ``response.text``. For ``progressiveText``, whose protocol is
  in the headers, call ``server.jenkins_request(requests.Request("GET", url))``: it goes through
  python-jenkins' session, auth, crumb, timeout and error mapping, and returns the
  ``requests.Response`` with ``X-Text-Size`` / ``X-More-Data``.
* python-jenkins fetches a crumb once per client and caches it forever (``server.crumb``), even
  for GETs; if the crumb issuer answers 404 it caches "no crumb" forever too.
* ``build_job(name)`` / ``build_job(name, {})`` POSTs ``/build``, not ``/buildWithParameters``:
  on a parameterized job Jenkins answers 400 and python-jenkins raises the raw HTTPError.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

log = logging.getLogger(__name__)

JENKINS_VERSION = "2.462.3"
CRUMB_FIELD = "Jenkins-Crumb"
OUTCOMES = ("succeed", "fail", "unstable", "hang")
_RESULT_OF = {"succeed": "SUCCESS", "fail": "FAILURE", "unstable": "UNSTABLE"}
_COLOR_OF = {"SUCCESS": "blue", "FAILURE": "red", "UNSTABLE": "yellow", "ABORTED": "aborted"}
_JSON = "application/json;charset=utf-8"
_TEXT = "text/plain;charset=UTF-8"
_HTML = "text/html;charset=utf-8"
_TICK = 0.01
# Query/form fields Jenkins reads itself rather than as build parameters.
_NOT_PARAMETERS = {"token", "delay", "cause", CRUMB_FIELD, "json"}
_PERMALINKS = (
    "lastBuild",
    "lastCompletedBuild",
    "lastSuccessfulBuild",
    "lastStableBuild",
    "lastFailedBuild",
    "lastUnstableBuild",
    "lastUnsuccessfulBuild",
)

OnBuildFinished = Callable[[str, int, str], object]


@dataclass(frozen=True)
class Script:
    """What one build of a scripted job does: its outcome (one of OUTCOMES), the lines its
    steps write to the console, spread evenly over `seconds` (the stand-in's build_seconds when
    None), then Jenkins' own line for a failed or unstable step."""

    outcome: str = "succeed"
    lines: tuple[str, ...] = ()
    seconds: float | None = None


# A job's script: given the build's parameters, what the build does (a Script or an outcome).
ScriptOf = Callable[[dict[str, str]], "Script | str"]


@dataclass(frozen=True)
class BuildRecord:
    """A snapshot of one build, for assertions."""

    job: str
    number: int
    parameters: dict[str, str]
    result: str | None
    building: bool
    log: str
    queue_id: int
    outcome: str  # "deciding" while a scripted job's script has not answered
    deciding: bool = False


@dataclass(frozen=True)
class SeenRequest:
    """One request as the stand-in saw it: user is None for anonymous or rejected credentials."""

    method: str
    path: str
    query: str
    user: str | None
    status: int


@dataclass
class _Resp:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    from_jenkins: bool = True  # False: a proxy's or a broken server's page, no X-Jenkins


@dataclass
class _Build:
    job: str
    number: int
    queue_id: int
    parameters: dict[str, str]
    outcome: str
    timestamp_ms: int
    started: float  # monotonic
    run_seconds: float
    pending_lines: list[tuple[float, str]]
    log: bytearray = field(default_factory=bytearray)
    result: str | None = None
    building: bool = True
    post_production: bool = False
    deciding: bool = False  # a scripted job's script has not answered yet
    duration_ms: int = 0
    stop_requested_by: str | None = None

    def write(self, line: str) -> None:
        self.log += line.encode() + b"\n"


@dataclass
class _QueueItem:
    id: int
    job: str
    parameters: dict[str, str]
    in_queue_since_ms: int
    due: float  # monotonic end of the quiet period
    state: str = "waiting"  # waiting, blocked, buildable, left
    left_at: float | None = None
    build_number: int | None = None
    cancelled: bool = False


@dataclass
class _Job:
    name: str
    next_build_number: int = 1
    builds: dict[int, _Build] = field(default_factory=dict)
    plan: list[str] = field(default_factory=lambda: ["succeed"])
    # "any": accepts whatever it is sent; "defined": Jenkins' definitions; "none": unparameterized
    parameter_mode: str = "any"
    parameter_defaults: dict[str, str] = field(default_factory=dict)
    concurrent: bool = False
    script: ScriptOf | None = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], standin: JenkinsStandin) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY the second waits for the
    # client's delayed ACK (about 40 ms a request), which Jenkins' Jetty never does.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def version_string(self) -> str:
        return "Jetty(12.0.13)"

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        resp = self.server.standin._handle(
            method, self.path, self.headers, body, self.client_address[0]
        )
        try:
            self.send_response(resp.status)
            for name, value in resp.headers:
                self.send_header(name, value)
            if resp.content_type:
                self.send_header("Content-Type", resp.content_type)
            if resp.status not in (204, 304):
                self.send_header("Content-Length", str(len(resp.body)))
            self.end_headers()
            if method != "HEAD" and resp.status not in (204, 304):
                self.wfile.write(resp.body)
        except OSError:
            self.close_connection = True


def _json(obj: object, status: int = 200, headers: list[tuple[str, str]] | None = None) -> _Resp:
    return _Resp(status, json.dumps(obj).encode(), _JSON, headers or [])


def _error_page(status: int, message: str, uri: str, headers=None) -> _Resp:
    """The error page Jetty renders for ``sendError(status, message)``."""
    msg = html.escape(message)
    body = (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
        f"<title>Error {status} {msg}</title>\n</head>\n"
        f"<body>\n<h2>HTTP ERROR {status} {msg}</h2>\n<table>\n"
        f"<tr><th>URI:</th><td>{html.escape(uri)}</td></tr>\n"
        f"<tr><th>STATUS:</th><td>{status}</td></tr>\n"
        f"<tr><th>MESSAGE:</th><td>{msg}</td></tr>\n"
        "<tr><th>SERVLET:</th><td>Stapler</td></tr>\n"
        "</table>\n</body>\n</html>\n"
    )
    return _Resp(status, body.encode(), _HTML, list(headers or []))


def _page(title: str, content: str, status: int = 200) -> _Resp:
    body = (
        f"<!DOCTYPE html><html><head><title>{html.escape(title)} [Jenkins]</title></head>"
        f"<body>{content}</body></html>\n"
    )
    return _Resp(status, body.encode(), _HTML)


def _oops(message: str, status: int = 500) -> _Resp:
    """Jenkins' own error page for an exception in a web method."""
    return _page("Jenkins", f"<h1>Oops!</h1><p>{html.escape(message)}</p>", status)


def _time_span(seconds: float) -> str:
    """Jenkins' Util.getTimeSpanString, near enough."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))} ms"
    if seconds < 10:
        return f"{seconds:.1f} sec"
    return f"{int(seconds)} sec"


class JenkinsStandin:
    """An in-process Jenkins 2.462 look-alike on 127.0.0.1; see the module docstring."""

    def __init__(
        self,
        user: str = "fatcontroller",
        token: str = "s3cret-token",  # noqa: S107 - a test fixture's credential
        jobs: tuple[str, ...] | list[str] = ("demo-shop",),
        *,
        full_name: str | None = None,
        version: str = JENKINS_VERSION,
        port: int = 0,
        remember_requests: bool = True,
    ) -> None:
        """`port` 0 takes a free one (`url` says which). `remember_requests` False keeps no
        `requests`/`request_log`, for a stand-in that runs for days (the embedded default's)."""
        self.user = user
        self.token = token
        self.full_name = full_name or user
        self.version = version
        self.queue_delay = 0.2
        self.build_seconds = 0.5
        self.queue_item_ttl = 300.0
        self.executors = 2
        self.anonymous_read_root = True
        self.csrf_exempt_api_token = False
        self.public_url: str | None = None  # Jenkins' configured root URL, if not self.url
        self.requests: list[tuple[str, str]] = []
        self.request_log: list[SeenRequest] = []
        self.callback_errors: list[BaseException] = []
        self.server_errors: list[BaseException] = []

        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[str, _Job] = {name: _Job(name) for name in jobs}
        self._queue: dict[int, _QueueItem] = {}
        self._next_queue_id = 1
        self._callbacks: list[OnBuildFinished] = []
        self._override: tuple[int, str] | None = None
        self._forbidden = False
        self._salt = secrets.token_hex(16)
        self._cookie_name = f"JSESSIONID.{secrets.token_hex(4)}"
        self._sessions: set[str] = set()

        self.remember_requests = remember_requests
        self._host = "127.0.0.1"
        self._port: int | None = port or None
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._stopping = False

    # ----------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("JenkinsStandin is not started")
        return f"http://{self._host}:{self._port}/"

    @property
    def root_url(self) -> str:
        """The root URL Jenkins puts in Location headers and JSON "url" fields."""
        return self.public_url or self.url

    def start(self) -> JenkinsStandin:
        self._stopping = False
        self.up()
        self._scheduler = threading.Thread(
            target=self._run_scheduler, name="jenkins-standin-scheduler", daemon=True
        )
        self._scheduler.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._scheduler is not None:
            self._scheduler.join(timeout=5)
            self._scheduler = None
        self.down()

    def __enter__(self) -> JenkinsStandin:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def down(self) -> None:
        """Close the listening socket and open connections: connections are refused."""
        server, thread = self._server, self._server_thread
        self._server = self._server_thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def up(self) -> None:
        """Listen again, on the same port as before."""
        if self._server is not None:
            return
        server = _Server((self._host, self._port or 0), self)
        self._port = server.server_address[1]
        self._server = server
        self._server_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="jenkins-standin-http",
            daemon=True,
        )
        self._server_thread.start()

    # ------------------------------------------------------------------------------ controls

    def plan(self, job: str, *outcomes: str) -> None:
        """What the next builds of ``job`` do, in order; the last one repeats."""
        expanded: list[str] = []
        for outcome in outcomes or ("succeed",):
            if outcome == "flake":
                expanded += ["fail", "succeed"]
            elif outcome in OUTCOMES:
                expanded.append(outcome)
            else:
                raise ValueError(f"unknown outcome {outcome!r}; use one of {OUTCOMES} or 'flake'")
        with self._cond:
            self._job(job).plan = expanded

    def define_parameters(self, job: str, definitions: Mapping[str, str] | None) -> None:
        """Give ``job`` string parameter definitions {name: default}, or None: unparameterized."""
        with self._cond:
            j = self._job(job)
            if definitions is None:
                j.parameter_mode, j.parameter_defaults = "none", {}
            else:
                j.parameter_mode, j.parameter_defaults = "defined", dict(definitions)

    def script(self, job: str, script_of: ScriptOf | None) -> None:
        """Each new build of ``job`` does what ``script_of(parameters)`` says (a Script or an
        outcome), instead of following its plan; None goes back to the plan."""
        with self._cond:
            self._job(job).script = script_of

    def add_job(self, name: str, *, concurrent: bool = False) -> None:
        with self._cond:
            self._jobs.setdefault(name, _Job(name)).concurrent = concurrent

    def set_status_override(self, status: int | None, paths_prefix: str = "") -> None:
        """Answer requests whose path starts with the prefix with ``status``, before anything
        else (a broken Jenkins or its proxy). "" matches every path but "/". None restores."""
        with self._cond:
            self._override = None if status is None else (status, paths_prefix)

    def set_forbidden(self, on: bool) -> None:
        """The user keeps valid credentials but loses Overall/Read: 403 on all but /whoAmI/."""
        with self._cond:
            self._forbidden = on

    def on_build_finished(self, callback: OnBuildFinished) -> OnBuildFinished:
        """Call ``callback(job, number, result)`` in each build's post-build phase."""
        with self._cond:
            self._callbacks.append(callback)
        return callback

    def builds(self, job: str) -> list[BuildRecord]:
        with self._cond:
            return [
                BuildRecord(
                    job=b.job,
                    number=b.number,
                    parameters=dict(b.parameters),
                    result=b.result,
                    building=b.building,
                    log=b.log.decode(),
                    queue_id=b.queue_id,
                    outcome=b.outcome,
                    deciding=b.deciding,
                )
                for _, b in sorted(self._job(job).builds.items())
            ]

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise KeyError(f"the stand-in has no job {name!r}") from None

    # ----------------------------------------------------------------------------- scheduler

    def _run_scheduler(self) -> None:
        with self._cond:
            while not self._stopping:
                try:
                    self._tick(time.monotonic())
                except Exception as exc:  # a stand-in bug: keep it visible to tests
                    log.exception("jenkins stand-in scheduler failed")
                    self.server_errors.append(exc)
                self._cond.wait(_TICK)

    def _running(self) -> list[_Build]:
        return [b for j in self._jobs.values() for b in j.builds.values() if b.building]

    def _tick(self, now: float) -> None:
        for item in sorted(self._queue.values(), key=lambda i: i.id):
            if item.state == "left" or now < item.due:
                continue
            job = self._jobs[item.job]
            if not job.concurrent and any(b.building for b in job.builds.values()):
                item.state = "blocked"
            elif len(self._running()) >= self.executors:
                item.state = "buildable"
            else:
                self._start_build(item, job, now)
        for build in self._running():
            if build.post_production:
                continue
            while build.pending_lines and build.pending_lines[0][0] <= now - build.started:
                build.write(build.pending_lines.pop(0)[1])
            if build.stop_requested_by is not None:
                build.pending_lines.clear()
                build.write("Build was aborted")
                build.write(f"Aborted by {build.stop_requested_by}")
                self._enter_post_production(build, "ABORTED")
            elif build.deciding:
                continue
            elif (
                build.outcome != "hang"
                and not build.pending_lines
                and now - build.started >= build.run_seconds
            ):
                self._enter_post_production(build, _RESULT_OF[build.outcome])

    def _start_build(self, item: _QueueItem, job: _Job, now: float) -> None:
        number = job.next_build_number
        job.next_build_number += 1
        seconds = self.build_seconds
        # The path Jenkins' shell step names in the console; nothing is written there.
        script = f"/tmp/jenkins{secrets.randbelow(10**18)}.sh"  # noqa: S108
        shell = f"[{job.name}] $ /bin/sh -xe {script}"
        if job.script is not None:
            outcome, lines = "deciding", [(0.0, shell)]
        else:
            outcome = job.plan[0] if len(job.plan) == 1 else job.plan.pop(0)
            lines = self._planned_lines(shell, outcome, item.parameters, seconds)
        build = _Build(
            job=job.name,
            number=number,
            queue_id=item.id,
            parameters=dict(item.parameters),
            outcome=outcome,
            timestamp_ms=int(time.time() * 1000),
            started=now,
            run_seconds=seconds,
            pending_lines=lines,
            deciding=job.script is not None,
        )
        build.write(f"Started by user {self.full_name}")
        build.write("Running as SYSTEM")
        build.write(f"Building in workspace /var/jenkins_home/workspace/{job.name}")
        job.builds[number] = build
        item.state, item.left_at, item.build_number = "left", now, number
        if job.script is not None:
            threading.Thread(
                target=self._run_script,
                args=(build, job.script),
                name=f"jenkins-standin-{job.name}-{number}-script",
                daemon=True,
            ).start()

    @staticmethod
    def _planned_lines(
        shell: str, outcome: str, parameters: dict[str, str], seconds: float
    ) -> list[tuple[float, str]]:
        args = " ".join(f"{k}={v}" for k, v in parameters.items())
        lines = [
            (0.0, shell),
            (seconds * 0.2, f"+ ./deploy.sh {args}".rstrip()),
            (seconds * 0.4, "Checking out the release"),
            (seconds * 0.6, "Rolling out"),
        ]
        if outcome == "succeed":
            lines.append((seconds * 0.8, "Rollout complete"))
        elif outcome == "fail":
            lines += [
                (seconds * 0.8, "ERROR: rollout failed"),
                (seconds * 0.9, "+ exit 1"),
                (seconds, "Build step 'Execute shell' marked build as failure"),
            ]
        elif outcome == "unstable":
            lines.append((seconds, "Build step 'Execute shell' marked build as unstable"))
        else:  # hang
            lines = lines[:3] + [(seconds * 0.6, "Waiting for the deployment lock...")]
        return lines

    def _run_script(self, build: _Build, script_of: ScriptOf) -> None:
        """Ask a scripted job's script what this build does (outside the lock: it may take its
        time), then let the build go on with it."""
        try:
            answer = script_of(dict(build.parameters))
            script = Script(answer) if isinstance(answer, str) else answer
            if not isinstance(script, Script) or script.outcome not in OUTCOMES:
                raise ValueError(f"a script answers a Script or one of {OUTCOMES}, not {answer!r}")
        except Exception as exc:  # the build fails, as a shell step that crashed does
            log.exception("the script of %s failed", build.job)
            self.callback_errors.append(exc)
            script = Script("fail", (f"ERROR: {type(exc).__name__}: {exc}", "+ exit 1"))
        with self._cond:
            build.deciding = False
            if build.post_production or not build.building:
                return  # aborted while the script was deciding
            elapsed = time.monotonic() - build.started
            seconds = self.build_seconds if script.seconds is None else script.seconds
            lines = list(script.lines)
            if script.outcome == "fail":
                lines.append("Build step 'Execute shell' marked build as failure")
            elif script.outcome == "unstable":
                lines.append("Build step 'Execute shell' marked build as unstable")
            count = max(1, len(lines))
            build.pending_lines += [
                (elapsed + seconds * index / count, line) for index, line in enumerate(lines)
            ]
            build.outcome = script.outcome
            build.run_seconds = elapsed + seconds
            self._cond.notify_all()

    def _enter_post_production(self, build: _Build, result: str) -> None:
        build.result = result
        build.post_production = True
        threading.Thread(
            target=self._post_production,
            args=(build, list(self._callbacks)),
            name=f"jenkins-standin-{build.job}-{build.number}-post",
            daemon=True,
        ).start()

    def _post_production(self, build: _Build, callbacks: list[OnBuildFinished]) -> None:
        for callback in callbacks:
            try:
                callback(build.job, build.number, build.result or "")
            except BaseException as exc:  # reported to the test through callback_errors
                log.exception("on_build_finished callback failed")
                self.callback_errors.append(exc)
        with self._cond:
            build.write(f"Finished: {build.result}")
            build.duration_ms = max(1, int((time.monotonic() - build.started) * 1000))
            build.building = False
            self._cond.notify_all()

    # -------------------------------------------------------------------------- HTTP: entry

    def _handle(self, method, raw_path, headers, body, client_ip) -> _Resp:
        parts = urlsplit(raw_path)
        path, query = parts.path, parts.query
        user: str | None = None
        try:
            with self._cond:
                resp, user = self._serve(method, path, query, headers, body, client_ip)
        except Exception as exc:
            log.exception("jenkins stand-in failed on %s %s", method, raw_path)
            self.server_errors.append(exc)
            resp = _oops(f"{type(exc).__name__}: {exc}")
        if self.remember_requests:
            with self._cond:
                self.requests.append((method, path))
                self.request_log.append(SeenRequest(method, path, query, user, resp.status))
        if resp.from_jenkins:
            resp.headers += [("X-Jenkins", self.version), ("X-Hudson", "1.395")]
        return resp

    def _serve(self, method, path, query, headers, body, client_ip):
        if self._override is not None:
            status, prefix = self._override
            if (path != "/" or prefix) and path.startswith(prefix):
                return self._override_page(status, path), None

        user, failure = self._authenticate(headers, path)
        if failure is not None:
            return failure, None

        params = self._request_params(query, headers, body)
        if method == "POST" and not (self.csrf_exempt_api_token and user is not None):
            sent = headers.get(CRUMB_FIELD) or params.get(CRUMB_FIELD)
            session = self._session_of(headers)
            expected = self._crumb(user or "anonymous", client_ip, session) if session else None
            if not (sent and expected and hmac.compare_digest(sent, expected)):
                message = "No valid crumb was included in the request"
                return _error_page(403, message, path), user

        readable_by_all = path == "/whoAmI" or path.startswith("/whoAmI/")
        if user is None and not (readable_by_all or (path == "/" and self.anonymous_read_root)):
            return self._authentication_required(path, query), None
        if user is not None and self._forbidden and not readable_by_all:
            return self._access_denied(user, path), user

        return self._route(method, path, query, headers, params, user, client_ip), user

    # --------------------------------------------------------------------- HTTP: security

    def _authenticate(self, headers, path) -> tuple[str | None, _Resp | None]:
        value = headers.get("Authorization")
        if not value:
            return None, None
        scheme, _, credentials = value.partition(" ")
        if scheme.lower() != "basic":
            return None, None
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        name, colon, secret = decoded.partition(":")
        if not colon:
            return None, self._unauthorized("Malformed HTTP basic Authorization header", path)
        if name == self.user and hmac.compare_digest(secret.encode(), self.token.encode()):
            return name, None
        return None, self._unauthorized(f"Invalid password/token for user: {name}", path)

    @staticmethod
    def _unauthorized(message: str, path: str) -> _Resp:
        return _error_page(401, message, path, [("WWW-Authenticate", 'Basic realm="Jenkins"')])

    @staticmethod
    def _authentication_required(path: str, query: str) -> _Resp:
        target = quote(path + (f"?{query}" if query else ""), safe="")
        login = f"/login?from={target}"
        body = (
            f"<html><head><meta http-equiv='refresh' content='1;url={login}'/>"
            f"<script id='redirect' data-redirect-url='{login}' src='/static/redirect.js'>"
            "</script></head><body style='background-color:white; color:white;'>\n"
            "Authentication required\n<!--\n-->\n</body></html>"
        )
        headers = [
            ("X-You-Are-Authenticated-As", "anonymous"),
            ("X-You-Are-In-Group-Disabled", "JENKINS-39402: use /whoAmI to diagnose"),
            ("X-Required-Permission", "hudson.model.Hudson.Read"),
            ("X-Permission-Implied-By", "hudson.security.Permission.GenericRead"),
            ("X-Permission-Implied-By", "hudson.model.Hudson.Administer"),
        ]
        return _Resp(403, body.encode(), _HTML, headers)

    def _access_denied(self, user: str, path: str) -> _Resp:
        message = f"{user} is missing the Overall/Read permission"
        resp = _page("Access Denied", f"<h1>Access Denied</h1><p>{html.escape(message)}</p>", 403)
        resp.headers += [
            ("X-You-Are-Authenticated-As", user),
            ("X-You-Are-In-Group-Disabled", "JENKINS-39402: use /whoAmI to diagnose"),
            ("X-Required-Permission", "hudson.model.Hudson.Read"),
            ("X-Permission-Implied-By", "hudson.security.Permission.GenericRead"),
            ("X-Permission-Implied-By", "hudson.model.Hudson.Administer"),
        ]
        return resp

    @staticmethod
    def _override_page(status: int, path: str) -> _Resp:
        if status == 500:
            resp = _oops("A problem occurred while processing the request.")
        elif status == 503:
            resp = _page(
                "Starting Jenkins",
                "<h1>Please wait while Jenkins is getting ready to work...</h1>",
                503,
            )
        else:
            resp = _error_page(status, f"Status {status}", path)
        resp.from_jenkins = False
        return resp

    def _session_of(self, headers) -> str | None:
        cookies = SimpleCookie()
        for value in headers.get_all("Cookie") or []:
            with contextlib.suppress(CookieError):
                cookies.load(value)
        morsel = cookies.get(self._cookie_name)
        return morsel.value if morsel is not None and morsel.value in self._sessions else None

    def _crumb(self, name: str, client_ip: str, session: str) -> str:
        # DefaultCrumbIssuer: sha256(user name ";" client IP session id, salt)
        return hashlib.sha256(f"{name};{client_ip}{session}{self._salt}".encode()).hexdigest()

    # ------------------------------------------------------------------------ HTTP: routes

    @staticmethod
    def _request_params(query: str, headers, body: bytes) -> dict[str, str]:
        """Query string then urlencoded form body; the first value of a name wins."""
        pairs = parse_qsl(query, keep_blank_values=True)
        content_type = (headers.get("Content-Type") or "").lower()
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        params: dict[str, str] = {}
        for name, value in pairs:
            params.setdefault(name, value)
        return params

    def _route(self, method, path, query, headers, params, user, client_ip) -> _Resp:
        if method == "HEAD":
            method = "GET"
        reads = ("GET", "POST")

        def match(pattern: str) -> re.Match[str] | None:
            return re.fullmatch(pattern, path)

        if path == "/" and method in reads:
            return self._root_page()
        if match(r"/api/json/?") and method in reads:
            return _json(self._root_json())
        if match(r"/crumbIssuer/api/json/?") and method in reads:
            return self._crumb_issuer(headers, user or "anonymous", client_ip)
        if match(r"/me/api/json/?") and method in reads:
            if user is None:
                return self._authentication_required(path, query)
            return _json(self._user_json(user))
        if match(r"/whoAmI/api/json/?") and method in reads:
            return _json(self._whoami_json(user))
        if match(r"/queue/api/json/?") and method in reads:
            items = [self._queue_item_json(i) for i in self._queue.values() if i.state != "left"]
            return _json({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items})
        if m := match(r"/queue/item/(\d+)/api/json/?"):
            if method not in reads:
                return _error_page(405, "Method Not Allowed", path)
            item = self._live_queue_item(int(m[1]))
            if item is None:
                return _error_page(404, "Not Found", path)
            return _json(self._queue_item_json(item))
        if match(r"/queue/cancelItem/?"):
            if method != "POST":
                return self._require_post(path)
            return self._cancel_queue_item(params.get("id", ""), path)

        m = match(r"/job/([^/]+)(/.*)?")
        if m is None:
            return _error_page(404, "Not Found", path)
        job = self._jobs.get(unquote(m[1]))
        if job is None:
            return _error_page(404, "Not Found", path)
        rest = m[2] or "/"
        if rest == "/" and method in reads:
            return self._job_page(job)
        if re.fullmatch(r"/api/json/?", rest) and method in reads:
            return _json(self._job_json(job))
        if mm := re.fullmatch(r"/(build|buildWithParameters)/?", rest):
            if method != "POST":
                return self._require_post(path)
            return self._trigger(job, mm[1], params, path)

        mm = re.fullmatch(r"/([^/]+)(/.*)?", rest)
        build = self._find_build(job, unquote(mm[1])) if mm else None
        if mm is None or build is None:
            return _error_page(404, "Not Found", path)
        sub = mm[2] or "/"
        if sub == "/" and method in reads:
            return self._build_page(build)
        if re.fullmatch(r"/api/json/?", sub) and method in reads:
            return _json(self._build_json(build))
        if re.fullmatch(r"/consoleText/?", sub) and method in reads:
            return _Resp(200, bytes(build.log), _TEXT)
        if re.fullmatch(r"/logText/progressiveText/?", sub) and method in reads:
            return self._progressive_text(build, params.get("start"), path)
        if re.fullmatch(r"/stop/?", sub):
            if method != "POST":
                return self._require_post(path)
            if build.building and not build.post_production and build.stop_requested_by is None:
                build.stop_requested_by = self.full_name
                self._cond.notify_all()
            location = headers.get("Referer") or self._build_url(build)
            return _Resp(302, b"", None, [("Location", location)])
        return _error_page(404, "Not Found", path)

    @staticmethod
    def _require_post(path: str) -> _Resp:
        resp = _page(
            "This URL requires POST",
            "<h1>This URL requires POST</h1><p>The URL you're trying to access requires that "
            "requests be sent using POST (like a form submission).</p>",
            405,
        )
        resp.headers.append(("Allow", "POST"))
        return resp

    def _crumb_issuer(self, headers, name: str, client_ip: str) -> _Resp:
        session = self._session_of(headers)
        extra: list[tuple[str, str]] = []
        if session is None:
            session = f"node0{secrets.token_hex(12)}.node0"
            self._sessions.add(session)
            extra.append(("Set-Cookie", f"{self._cookie_name}={session}; Path=/; HttpOnly"))
        crumb = self._crumb(name, client_ip, session)
        return _json(
            {
                "_class": "hudson.security.csrf.DefaultCrumbIssuer",
                "crumb": crumb,
                "crumbRequestField": CRUMB_FIELD,
            },
            headers=extra,
        )

    def _trigger(self, job: _Job, endpoint: str, params: dict[str, str], path: str) -> _Resp:
        sent = {k: v for k, v in params.items() if k not in _NOT_PARAMETERS}
        if endpoint == "buildWithParameters":
            if job.parameter_mode == "none":
                return _oops("java.lang.IllegalStateException: This build is not parameterized!")
            parameters = self._parameters_for(job, sent)
        elif job.parameter_mode == "none":
            parameters = {}
        elif "json" in params:
            try:
                submitted = json.loads(params["json"]).get("parameter", [])
                if isinstance(submitted, dict):
                    submitted = [submitted]
                given = {str(p["name"]): str(p.get("value", "")) for p in submitted}
            except (ValueError, AttributeError, KeyError, TypeError):
                return _oops("net.sf.json.JSONException: malformed form submission")
            if job.parameter_mode == "defined" and set(given) - set(job.parameter_defaults):
                missing = sorted(set(given) - set(job.parameter_defaults))[0]
                return _oops(
                    f"java.lang.IllegalArgumentException: No such parameter definition: {missing}"
                )
            parameters = self._parameters_for(job, given)
        else:
            message = "This page expects a form submission" if params else "Nothing is submitted"
            return _error_page(400, message, path)

        for item in self._queue.values():  # Jenkins merges a duplicate into the waiting item
            if item.state != "left" and item.job == job.name and item.parameters == parameters:
                return self._created(item)
        item = _QueueItem(
            id=self._next_queue_id,
            job=job.name,
            parameters=parameters,
            in_queue_since_ms=int(time.time() * 1000),
            due=time.monotonic() + self.queue_delay,
        )
        self._next_queue_id += 1
        self._queue[item.id] = item
        self._cond.notify_all()
        return self._created(item)

    def _created(self, item: _QueueItem) -> _Resp:
        return _Resp(201, b"", None, [("Location", f"{self.root_url}queue/item/{item.id}/")])

    @staticmethod
    def _parameters_for(job: _Job, sent: dict[str, str]) -> dict[str, str]:
        if job.parameter_mode == "defined":
            return {name: sent.get(name, d) for name, d in job.parameter_defaults.items()}
        return dict(sent)

    def _live_queue_item(self, queue_id: int) -> _QueueItem | None:
        item = self._queue.get(queue_id)
        if item is None:
            return None
        if item.left_at is not None and time.monotonic() - item.left_at >= self.queue_item_ttl:
            del self._queue[queue_id]  # Jenkins' leftItems cache expires after 5 minutes
            return None
        return item

    def _cancel_queue_item(self, raw_id: str, path: str) -> _Resp:
        try:
            queue_id = int(raw_id)
        except ValueError:
            return _error_page(400, f"Invalid id: {raw_id}", path)
        item = self._live_queue_item(queue_id)
        if item is None:
            return _error_page(404, f"Provided id ({queue_id}) not found", path)
        if item.state == "left":
            return _error_page(500, f"Could not cancel run for id {queue_id}", path)
        item.state, item.left_at, item.cancelled = "left", time.monotonic(), True
        return _Resp(204)

    def _progressive_text(self, build: _Build, start_param: str | None, path: str) -> _Resp:
        try:
            start = int(start_param) if start_param is not None else 0
        except ValueError:
            return _oops(f"java.lang.NumberFormatException: For input string: {start_param!r}")
        if start < 0:
            return _oops("java.io.IOException: Negative seek offset")
        data = bytes(build.log)
        if start > len(data):
            start = 0  # "text rolled over", as LargeText.doProgressText does
        headers = [("X-Text-Size", str(len(data)))]
        if build.building:
            headers.append(("X-More-Data", "true"))
        return _Resp(200, data[start:], _TEXT, headers)

    # --------------------------------------------------------------------- JSON and pages

    def _job_url(self, job: _Job | str) -> str:
        name = job if isinstance(job, str) else job.name
        return f"{self.root_url}job/{quote(name)}/"

    def _build_url(self, build: _Build) -> str:
        return f"{self._job_url(build.job)}{build.number}/"

    def _find_build(self, job: _Job, ident: str) -> _Build | None:
        if ident.isdigit():
            return job.builds.get(int(ident))
        if ident not in _PERMALINKS:
            return None
        newest_first = [job.builds[n] for n in sorted(job.builds, reverse=True)]
        if ident == "lastBuild":
            return newest_first[0] if newest_first else None
        wanted = {
            "lastCompletedBuild": {"SUCCESS", "UNSTABLE", "FAILURE", "ABORTED"},
            "lastSuccessfulBuild": {"SUCCESS", "UNSTABLE"},
            "lastStableBuild": {"SUCCESS"},
            "lastFailedBuild": {"FAILURE"},
            "lastUnstableBuild": {"UNSTABLE"},
            "lastUnsuccessfulBuild": {"UNSTABLE", "FAILURE", "ABORTED"},
        }[ident]
        return next((b for b in newest_first if not b.building and b.result in wanted), None)

    def _build_ref(self, build: _Build | None) -> dict | None:
        if build is None:
            return None
        return {
            "_class": "hudson.model.FreeStyleBuild",
            "number": build.number,
            "url": self._build_url(build),
        }

    def _color(self, job: _Job) -> str:
        completed = self._find_build(job, "lastCompletedBuild")
        color = _COLOR_OF[completed.result] if completed and completed.result else "notbuilt"
        last = self._find_build(job, "lastBuild")
        return f"{color}_anime" if last is not None and last.building else color

    def _estimated_duration(self, job: _Job) -> int:
        """Job.getEstimatedDuration: last 3 successful builds, topped up with failed ones."""
        done = [job.builds[n] for n in sorted(job.builds, reverse=True)]
        done = [b for b in done if not b.building]
        good = [b for b in done if b.result in ("SUCCESS", "UNSTABLE")][:3]
        if len(good) < 3:
            good += [b for b in done if b.result == "FAILURE"][: 3 - len(good)]
        total = sum(b.duration_ms for b in good)
        return round(total / len(good)) if good and total else -1

    def _user_json(self, user: str) -> dict:
        return {
            "_class": "hudson.model.User",
            "absoluteUrl": f"{self.root_url}user/{quote(user)}",
            "description": None,
            "fullName": self.full_name,
            "id": user,
            "property": [],
        }

    @staticmethod
    def _whoami_json(user: str | None) -> dict:
        name = user or "anonymous"
        return {
            "_class": "hudson.security.WhoAmI",
            "anonymous": user is None,
            "authenticated": True,  # Jenkins says true for anonymous too
            "authorities": ["authenticated"] if user else ["anonymous"],
            "details": None,
            "name": name,
            "toString": f"{'UsernamePasswordAuthenticationToken' if user else 'Anonymous'}"
            f" [Principal={name}]",
        }

    def _root_json(self) -> dict:
        jobs = [
            {
                "_class": "hudson.model.FreeStyleProject",
                "name": j.name,
                "url": self._job_url(j),
                "color": self._color(j),
            }
            for j in self._jobs.values()
        ]
        view = {"_class": "hudson.model.AllView", "name": "all", "url": self.root_url}
        return {
            "_class": "hudson.model.Hudson",
            "assignedLabels": [{"name": "built-in"}],
            "mode": "NORMAL",
            "nodeDescription": "the Jenkins controller's built-in node",
            "nodeName": "",
            "numExecutors": self.executors,
            "description": None,
            "jobs": jobs,
            "overallLoad": {},
            "primaryView": view,
            "quietDownReason": None,
            "quietingDown": False,
            "slaveAgentPort": -1,
            "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
            "url": self.root_url,
            "useCrumbs": True,
            "useSecurity": True,
            "views": [view],
        }

    def _parameters_action(self, parameters: dict[str, str]) -> list[dict]:
        if not parameters:
            return []
        values = [
            {"_class": "hudson.model.StringParameterValue", "name": k, "value": v}
            for k, v in parameters.items()
        ]
        return [{"_class": "hudson.model.ParametersAction", "parameters": values}]

    def _cause_action(self) -> dict:
        cause = {
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": f"Started by user {self.full_name}",
            "userId": self.user,
            "userName": self.full_name,
        }
        return {"_class": "hudson.model.CauseAction", "causes": [cause]}

    def _queue_item_json(self, item: _QueueItem) -> dict:
        job = self._jobs[item.job]
        data: dict = {
            "_class": "",
            "actions": self._parameters_action(item.parameters) + [self._cause_action()],
            "blocked": item.state == "blocked",
            "buildable": item.state == "buildable",
            "id": item.id,
            "inQueueSince": item.in_queue_since_ms,
            "params": "".join(f"\n{k}={v}" for k, v in item.parameters.items()),
            "stuck": False,
            "task": {
                "_class": "hudson.model.FreeStyleProject",
                "name": job.name,
                "url": self._job_url(job),
                "color": self._color(job),
            },
            "url": f"queue/item/{item.id}/",
            "why": None,
        }
        now = time.monotonic()
        if item.state == "left":
            build = job.builds.get(item.build_number) if item.build_number else None
            data.update(
                {
                    "_class": "hudson.model.Queue$LeftItem",
                    "cancelled": item.cancelled,
                    "executable": self._build_ref(build),
                }
            )
        elif item.state == "waiting" or now < item.due:
            data.update(
                {
                    "_class": "hudson.model.Queue$WaitingItem",
                    "timestamp": item.in_queue_since_ms + int((item.due - now) * 1000),
                    "why": f"In the quiet period. Expires in {_time_span(item.due - now)}",
                }
            )
        elif item.state == "blocked":
            running = self._find_build(job, "lastBuild")
            eta = "N/A"
            estimate = self._estimated_duration(job)
            if running is not None and estimate > 0:
                eta = _time_span(max(0.0, estimate / 1000 - (now - running.started)))
            number = running.number if running else "?"
            data.update(
                {
                    "_class": "hudson.model.Queue$BlockedItem",
                    "buildableStartMilliseconds": item.in_queue_since_ms,
                    "why": f"Build #{number} is already in progress (ETA: {eta})",
                }
            )
        else:
            data.update(
                {
                    "_class": "hudson.model.Queue$BuildableItem",
                    "buildableStartMilliseconds": item.in_queue_since_ms,
                    "pending": False,
                    "why": "Waiting for next available executor",
                }
            )
        return data

    def _job_json(self, job: _Job) -> dict:
        newest_first = [job.builds[n] for n in sorted(job.builds, reverse=True)]
        queued = [i for i in self._queue.values() if i.job == job.name and i.state != "left"]
        properties = []
        if job.parameter_mode != "none":
            definitions = [
                {
                    "_class": "hudson.model.StringParameterDefinition",
                    "defaultParameterValue": {
                        "_class": "hudson.model.StringParameterValue",
                        "name": name,
                        "value": default,
                    },
                    "description": "",
                    "name": name,
                    "type": "StringParameterDefinition",
                }
                for name, default in job.parameter_defaults.items()
            ]
            properties.append(
                {
                    "_class": "hudson.model.ParametersDefinitionProperty",
                    "parameterDefinitions": definitions,
                }
            )
        data = {
            "_class": "hudson.model.FreeStyleProject",
            "actions": [{}, {"_class": "hudson.model.ParametersDefinitionProperty"}]
            if properties
            else [{}],
            "description": "",
            "displayName": job.name,
            "displayNameOrNull": None,
            "fullDisplayName": job.name,
            "fullName": job.name,
            "name": job.name,
            "url": self._job_url(job),
            "buildable": True,
            "builds": [self._build_ref(b) for b in newest_first[:100]],
            "color": self._color(job),
            "firstBuild": self._build_ref(newest_first[-1] if newest_first else None),
            "healthReport": [],
            "inQueue": bool(queued),
            "keepDependencies": False,
            "nextBuildNumber": job.next_build_number,
            "property": properties,
            "queueItem": self._queue_item_json(queued[0]) if queued else None,
            "concurrentBuild": job.concurrent,
            "disabled": False,
            "downstreamProjects": [],
            "labelExpression": None,
            "scm": {"_class": "hudson.scm.NullSCM"},
            "upstreamProjects": [],
        }
        for permalink in _PERMALINKS:
            data[permalink] = self._build_ref(self._find_build(job, permalink))
        return data

    def _build_json(self, build: _Build) -> dict:
        job = self._jobs[build.job]
        return {
            "_class": "hudson.model.FreeStyleBuild",
            "actions": self._parameters_action(build.parameters) + [self._cause_action(), {}],
            "artifacts": [],
            "building": build.building,
            "description": None,
            "displayName": f"#{build.number}",
            "duration": 0 if build.building else build.duration_ms,
            "estimatedDuration": self._estimated_duration(job),
            "fullDisplayName": f"{build.job} #{build.number}",
            "id": str(build.number),
            "keepLog": False,
            "number": build.number,
            "queueId": build.queue_id,
            "result": build.result,
            "timestamp": build.timestamp_ms,
            "url": self._build_url(build),
            "builtOn": "",
            "changeSet": {"_class": "hudson.scm.EmptyChangeLogSet", "items": [], "kind": None},
            "culprits": [],
        }

    def _root_page(self) -> _Resp:
        items = "".join(
            f'<li><a href="job/{quote(j.name)}/">{html.escape(j.name)}</a></li>'
            for j in self._jobs.values()
        )
        return _page("Dashboard", f"<h1>Dashboard</h1><ul>{items}</ul>")

    def _job_page(self, job: _Job) -> _Resp:
        return _page(job.name, f"<h1>Project {html.escape(job.name)}</h1>")

    def _build_page(self, build: _Build) -> _Resp:
        title = f"{build.job} #{build.number}"
        status = "in progress" if build.building else (build.result or "")
        return _page(title, f"<h1>Build #{build.number}</h1><p>{html.escape(status)}</p>")
