"""The embedded default that `make run` starts, for tests that drive it over real HTTP.

`embedded_server(var_dir)` runs the same commands as `make run` (migrate, collectstatic, demo,
runembedded) as subprocesses, with FC_EMBEDDED=1 and without DATABASE_URL, REDIS_URL or
SECRET_KEY, so the server keeps SQLite, a folder broker and a secret key under its own
FC_VAR_DIR, and web, a Celery worker and Celery beat are real separate processes. The AWS_*
settings are taken away too, so it also runs the simulated AWS, `runmoto`, on a free
FC_MOTO_PORT, and the demo deploys to its ECS; and so are the FC_ settings, so it runs the
stand-in Jenkins, `runjenkins`, on a free FC_JENKINS_PORT for the demo's legacy deploy jobs.

A plain module, not a pytest plugin: the test modules wrap it in their own fixtures
(tests/test_embedded_default.py, tests/e2e/conftest.py).
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from lib.process_groups import stop_group

BASE_DIR = Path(__file__).resolve().parent.parent

# Settings that would move the server away from the embedded default if the test run has them.
NOT_EMBEDDED = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECURE_COOKIES",
}

START_TIMEOUT = 60.0  # the three processes starting on a slow machine
READY_LINE = "Fat Controller is on http://"  # what runembedded prints once everything answers
LOG_TAIL_LINES = 80


class EmbeddedServerError(AssertionError):
    """The embedded default did not start; the message ends with the server's log."""


@dataclass
class EmbeddedServer:
    url: str  # base URL, no trailing slash: http://127.0.0.1:PORT
    username: str
    password: str
    var_dir: Path
    log_file: Path

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log yet)"
        return "\n".join(text.splitlines()[-lines:])

    def explain(self, message: str) -> str:
        """`message` and the end of the server's log, for an assertion that failed."""
        return f"{message}\n--- the last lines of {self.log_file} ---\n{self.log_tail()}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def embedded_environment(var_dir: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in NOT_EMBEDDED and not name.startswith(("FC_", "AWS_"))
    }
    env.update(
        FC_EMBEDDED="1",
        FC_VAR_DIR=str(var_dir),
        FC_MOTO_PORT=str(free_port()),  # the simulated AWS, beside a `make run` on 8001
        FC_JENKINS_PORT=str(free_port()),  # the stand-in Jenkins, beside one on 8002
        # The demo's legacy jobs take 1 s, not 4: three phases of them were two thirds of a
        # demo deploy's time, and what the tests ask of them does not change with it.
        FC_LEGACY_JOB_SECONDS="1",
        # And so the leaky branch's tasks may leak after 30 s, not 60: that deploy is out and
        # merged within 15 s here, under 25 s on a busy machine, before any task dies.
        FC_DEMO_LEAK_SECONDS="30",
        PYTHONUNBUFFERED="1",
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise EmbeddedServerError(f"manage.py {' '.join(args)} failed:\n{output}")
    return output


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to runembedded, which stops its children (moto, web, worker, beat), then
    SIGKILL to its process group for anything left over, such as a stuck child."""
    stop_group(process, grace=30)


def wait_until_up(server: EmbeddedServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedServerError(
                server.explain(f"runembedded exited with {process.returncode}")
            )
        # Up as `make run` says it is: web may answer before the simulated AWS, the
        # stand-in Jenkins and the worker are, and the line comes once all of them are.
        if said(server, READY_LINE):
            try:
                if requests.get(f"{server.url}/login/", timeout=2).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
        time.sleep(0.2)
    raise EmbeddedServerError(
        server.explain(
            f"runembedded did not say {READY_LINE!r} with GET /login/ answering 200 "
            f"within {START_TIMEOUT} s"
        )
    )


@contextmanager
def embedded_server(
    var_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[EmbeddedServer]:
    """`make run` in `var_dir` (its FC_VAR_DIR) on a free port; stopped on the way out.

    Yields an EmbeddedServer: the base URL, the demo's first login and the var dir.
    `extra_env` is set for every process (say a shorter FC_STALL_AFTER for a test).
    """
    var_dir = Path(var_dir)
    env = {**embedded_environment(var_dir), **(extra_env or {})}
    manage(env, "migrate", "--no-input")
    manage(env, "collectstatic", "--no-input", "--verbosity", "0")
    demo_output = manage(env, "demo")
    username, password = (var_dir / "first-login.txt").read_text().split()
    if f"Log in as {username} with password {password}" not in demo_output:
        raise EmbeddedServerError(f"the demo printed no first login:\n{demo_output}")

    port = free_port()
    log_file = var_dir / "runembedded.log"
    server = EmbeddedServer(f"http://127.0.0.1:{port}", username, password, var_dir, log_file)
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runembedded", f"127.0.0.1:{port}"],
            cwd=BASE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_up(server, process)
        yield server
    finally:
        stop(process)


def report_log(request, server: EmbeddedServer, what: str) -> None:
    """Write the end of the server's log to pytest's terminal (`request` is a fixture's)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    text = server.explain(f"{what} failed")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(text)
    else:
        print(text, file=sys.__stderr__)


@contextmanager
def embedded_for_tests(request, tmp_path_factory, folder: str, who: str, extra_env=None):
    """The embedded server for a module's tests; its log is shown if one of them failed."""
    failed_before = request.session.testsfailed
    with embedded_server(tmp_path_factory.mktemp(folder), extra_env) as server:
        try:
            yield server
        finally:
            if request.session.testsfailed > failed_before:
                report_log(request, server, who)


# ------------------------------------------------------------- its processes


def processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, command line). Zombies are left out."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        if state not in ("Z", "X"):
            found[int(entry.name)] = (int(ppid), cmdline)
    return found


def runembedded_pid(server: EmbeddedServer) -> int:
    addrport = server.url.removeprefix("http://")
    found = [
        pid
        for pid, (_, cmdline) in processes().items()
        if "manage.py runembedded" in cmdline and cmdline.rstrip().endswith(addrport)
    ]
    assert len(found) == 1, server.explain(f"runembedded processes for {addrport}: {found}")
    return found[0]


def children_of(pid: int, table=None) -> dict[int, str]:
    table = processes() if table is None else table
    return {child: cmd for child, (ppid, cmd) in table.items() if ppid == pid}


def descendants(pid: int) -> dict[int, str]:
    table = processes()
    found, todo = {}, [pid]
    while todo:
        for child, cmd in children_of(todo.pop(), table).items():
            found[child] = cmd
            todo.append(child)
    return found


def child_named(server: EmbeddedServer, marker: str) -> int:
    found = [pid for pid, cmd in children_of(runembedded_pid(server)).items() if marker in cmd]
    assert len(found) == 1, server.explain(f"children running {marker!r}: {found}")
    return found[0]


def said(server: EmbeddedServer, line: str) -> bool:
    return line in server.log_tail(lines=100_000)
