"""The embedded default's stand-in Jenkins under the supervisor, as runembedded runs it.

runembedded's own child spec for it (`legacy_jenkins`), under lib.supervisor's Supervisor,
run from a thread of its own as runembedded runs it from its main thread: the stand-in starts
and takes the credentials made up for the run, a SIGKILLed one is started again by pid and
takes them again, and a stop leaves neither process behind. The credentials are never in
what the supervisor or the stand-in print. (tests/test_embedded_supervisor.py checks that
`make run` itself starts it, and that a SIGKILLed runembedded leaves it behind no more than
the other children.)
"""

import io
import os
import signal
import sys
import threading
from dataclasses import replace

import pytest

from devtools.management.commands.runembedded import legacy_jenkins
from devtools.management.commands.runjenkins import jenkins_ready
from lib.supervisor import Supervisor
from tests.embedded_server import free_port
from tests.waiting import wait_until

START_TIMEOUT = 60.0  # Django starting in a child on a busy machine
# A job of its own: the demo's jobs come from its configuration file, which is not needed here.
JOB = "legacy-deploy-worker"

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; the death signal is Linux's"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_runembedded_makes_up_credentials_for_each_run(monkeypatch):
    monkeypatch.setenv("FC_JENKINS_PORT", "18002")
    first, second = {}, {}
    spec = legacy_jenkins(first)
    legacy_jenkins(second)
    assert first["FC_LEGACY_JENKINS_URL"] == "http://127.0.0.1:18002/"
    assert first["FC_LEGACY_JENKINS_USER"] == "fatcontroller"
    assert len(first["FC_LEGACY_JENKINS_TOKEN"]) >= 32
    assert first["FC_LEGACY_JENKINS_TOKEN"] != second["FC_LEGACY_JENKINS_TOKEN"]
    assert spec.argv[1:] == ["manage.py", "runjenkins", "--port", "18002"]
    assert spec.env is first  # the same settings as web and worker are given
    assert first["FC_LEGACY_JENKINS_TOKEN"] not in " ".join(spec.argv)  # not on a command line


def test_the_supervisor_starts_restarts_and_stops_the_stand_in_jenkins_by_pid(monkeypatch, capfd):
    monkeypatch.setenv("FC_JENKINS_PORT", str(free_port()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_LEGACY_")}
    spec = legacy_jenkins(env)
    spec = replace(spec, argv=[*spec.argv, "--job", JOB])
    url, user, token = (env[f"FC_LEGACY_JENKINS_{k}"] for k in ("URL", "USER", "TOKEN"))
    said = io.StringIO()
    supervisor = Supervisor([spec], handle_signals=False, out=said, first_backoff=0.2)
    ran = []

    def supervise():
        # Started and watched from this thread, which outlives the child, as runembedded's
        # main thread does: the child's death signal is tied to the thread that started it.
        supervisor.start("jenkins")
        ran.append(supervisor.run())

    thread = threading.Thread(target=supervise, name="supervisor")
    thread.start()
    pids = []
    try:
        wait_until(
            lambda: jenkins_ready(url, user, token, [JOB]),
            START_TIMEOUT,
            lambda: f"the stand-in Jenkins at {url}; supervisor said: {said.getvalue()}",
            interval=0.2,
        )
        first = supervisor.process("jenkins").pid
        pids.append(first)
        assert not jenkins_ready(url, user, "not-the-token")

        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: "jenkins exited with signal SIGKILL: restarting it" in said.getvalue(),
            START_TIMEOUT,
            lambda: f"the restart to be said: {said.getvalue()}",
        )
        wait_until(
            lambda: jenkins_ready(url, user, token, [JOB]),
            START_TIMEOUT,
            lambda: f"the restarted stand-in at {url}; supervisor said: {said.getvalue()}",
            interval=0.2,
        )
        again = supervisor.process("jenkins").pid
        pids.append(again)
        assert again != first and not alive(first)
        assert f"jenkins started again (pid {again})" in said.getvalue()
    finally:
        supervisor.request_stop("the test is done")
        thread.join(30)
    assert not thread.is_alive() and ran == [0]
    assert not [pid for pid in pids if alive(pid)]
    assert not jenkins_ready(url, user, token)
    printed = said.getvalue() + "".join(capfd.readouterr())
    assert "Stand-in Jenkins on" in printed  # what the child printed is here too
    assert token not in printed
