"""lib.process_groups with real processes: a leader that starts a grandchild, and the two
must go together."""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from lib.process_groups import kill_group, run_in_own_group, start_in_own_group, stop_group
from tests.waiting import wait_until

# A leader that starts a grandchild waiting for a signal, says the grandchild's pid, then
# waits itself. argv[1] says what the leader does on SIGTERM: "exit 3", "ignore" or "die".
LEADER = """
import signal, subprocess, sys
if sys.argv[1] == "exit 3":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
elif sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
print(grandchild.pid, flush=True)
grandchild.wait()
"""


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie left for init to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def first_line(process: subprocess.Popen, timeout: float = 10.0) -> str:
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"pid {process.pid} said nothing within {timeout} s"
    return process.stdout.readline()


@pytest.fixture
def family():
    """Start a leader (on_term as in LEADER) in its own group; (leader, grandchild pid)."""
    started = []

    def start(on_term: str = "die") -> tuple[subprocess.Popen, int]:
        leader = start_in_own_group(
            [sys.executable, "-c", LEADER, on_term], stdout=subprocess.PIPE, text=True
        )
        started.append(leader)
        return leader, int(first_line(leader))

    yield start
    for leader in started:  # a test that failed must not leave its family running
        kill_group(leader.pid)
        leader.wait(timeout=10)
        leader.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
class TestOnLinux:
    def test_the_child_leads_a_group_and_session_of_its_own(self, family):
        leader, grandchild = family()
        assert os.getpgid(leader.pid) == leader.pid != os.getpgrp()
        assert os.getsid(leader.pid) == leader.pid
        assert os.getpgid(grandchild) == leader.pid
        assert os.readlink(f"/proc/{leader.pid}/fd/0") == os.devnull

    def test_kill_group_kills_the_grandchild_too(self, family):
        leader, grandchild = family()
        kill_group(leader.pid)
        assert leader.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")

    def test_a_group_already_gone_is_not_an_error(self, family):
        leader, grandchild = family()
        kill_group(leader.pid)
        leader.wait(timeout=10)
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")
        kill_group(leader.pid)
        kill_group(leader.pid, signal.SIGTERM)

    def test_stop_group_lets_a_leader_that_stops_on_sigterm_exit_its_own_way(self, family):
        leader, grandchild = family("exit 3")
        assert stop_group(leader, grace=10) == 3
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")

    def test_stop_group_kills_a_group_that_ignores_sigterm_after_the_grace(self, family):
        leader, grandchild = family("ignore")  # the grandchild inherits the ignoring
        started = time.monotonic()
        assert stop_group(leader, grace=0.3) == -signal.SIGKILL
        assert time.monotonic() - started >= 0.3
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")

    def test_stop_group_without_grace_kills_at_once(self, family):
        leader, grandchild = family("exit 3")
        assert stop_group(leader, grace=0) == -signal.SIGKILL
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")

    def test_a_death_signal_kills_the_child_when_its_parent_dies(self, tmp_path):
        # The middle process starts a child that should die with it, says its pid, and waits.
        middle = start_in_own_group(
            [
                sys.executable,
                "-c",
                "import signal, sys; from lib.process_groups import start_in_own_group; "
                "child = start_in_own_group([sys.executable, '-c', 'import signal; "
                "signal.pause()'], death_signal=signal.SIGKILL); "
                "print(child.pid, flush=True); signal.pause()",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=os.getcwd(),
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        child = None
        try:
            child = int(first_line(middle))
            os.kill(middle.pid, signal.SIGKILL)  # the middle alone; its child has its own group
            middle.wait(timeout=10)
            wait_until(lambda: gone(child), 5, f"child {child} to die with its parent")
        finally:
            if child is not None:
                kill_group(child)
            kill_group(middle.pid)
            middle.wait(timeout=10)
            middle.stdout.close()

    def test_run_in_own_group_kills_the_whole_group_on_a_timeout(self, tmp_path):
        pidfile = tmp_path / "grandchild"
        script = f"sleep 60 & echo $! > {pidfile}; wait"
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            run_in_own_group(["sh", "-c", script], timeout=0.5)
        assert time.monotonic() - started < 10  # not held up by the grandchild's pipe
        grandchild = int(pidfile.read_text())
        wait_until(lambda: gone(grandchild), 5, f"grandchild {grandchild} to die")


def test_run_in_own_group_returns_what_it_ran(tmp_path):
    result = run_in_own_group(
        ["sh", "-c", "echo out; echo err >&2; exit 4"], timeout=10, cwd=tmp_path, text=True
    )
    assert (result.returncode, result.stdout, result.stderr) == (4, "out\n", "err\n")
    assert result.args == ["sh", "-c", "echo out; echo err >&2; exit 4"]
