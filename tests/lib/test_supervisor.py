"""lib/supervisor.py with plain child processes: small `python -c` scripts, no Django.

Each test says what a person running `make run` would see: a dead child is restarted after
a backoff that doubles and resets, with one line saying so; a child that keeps dying stops
everything with a non-zero status; SIGTERM stops every child (SIGKILL for one that will not
go); and a SIGKILLed supervisor leaves no child behind. Backoffs are a tenth of a second and
every wait polls with a deadline, so the tests hold on a busy machine.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lib.supervisor import ChildSpec, Supervisor, describe_exit
from tests.waiting import wait_until

BASE_DIR = Path(__file__).resolve().parents[2]
START = 20.0  # a python child starting on a busy machine, several times over

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the death signal is Linux's prctl"
)

# A child that records each of its runs in a folder (run1, run2, ...: its pid and when it
# started) and then behaves as the run's word says: "kill" (SIGKILLs itself), "exit3", or
# "stay" (runs until stopped). The last word holds for any later run.
RUNS = """
import os, signal, sys, time
folder, words = sys.argv[1], sys.argv[2].split(",")
n = len([name for name in os.listdir(folder) if name.startswith("run")]) + 1
if sys.argv[3:] == ["stubborn"]:  # before the run is recorded: a test signals it after that
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(os.path.join(folder, f".run{n}"), "w") as f:
    f.write(f"{os.getpid()} {time.monotonic()}")
os.replace(os.path.join(folder, f".run{n}"), os.path.join(folder, f"run{n}"))
word = words[min(n, len(words)) - 1]
if word == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if word == "exit3":
    sys.exit(3)
while True:
    time.sleep(1)
"""

# The supervisor as a process of its own, for the tests that signal it: argv[1] is a JSON
# list of [name, argv] and argv[2] the keyword arguments; it exits with run()'s status.
SUPERVISOR = """
import json, sys
from lib.supervisor import ChildSpec, Supervisor
children = [ChildSpec(name, argv) for name, argv in json.loads(sys.argv[1])]
with Supervisor(children, **json.loads(sys.argv[2])) as supervisor:
    for child in children:
        supervisor.start(child.name)
    sys.exit(supervisor.run())
"""


class Lines:
    """What the supervisor says, kept for the test (written from the supervisor's thread)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        with self._lock:
            self.lines.extend(line for line in text.splitlines() if line)

    def flush(self) -> None:
        pass

    def said(self, fragment: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if fragment in line]

    def __str__(self) -> str:
        with self._lock:
            return "\n".join(self.lines) or "(nothing said)"


def runs_child(name: str, folder: Path, words: str, *extra: str) -> ChildSpec:
    folder.mkdir(exist_ok=True)
    return ChildSpec(name, [sys.executable, "-c", RUNS, str(folder), words, *extra])


def run_record(folder: Path, n: int) -> tuple[int, float] | None:
    try:
        pid, started = (folder / f"run{n}").read_text().split()
    except FileNotFoundError:
        return None
    return int(pid), float(started)


def alive(pid: int) -> bool:
    """Is `pid` a live process? A zombie (dead, not yet reaped by its new parent) is not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


class InThread:
    """Start every child and run() the supervisor in a thread, so the test can watch it."""

    def __init__(self, supervisor: Supervisor, names: list[str]):
        self.supervisor = supervisor
        self.status: int | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(names,), daemon=True)
        self._thread.start()

    def _main(self, names):
        try:
            with self.supervisor:
                for name in names:
                    self.supervisor.start(name)
                self.status = self.supervisor.run()
        except BaseException as exc:  # reported by join(), in the test's thread
            self.error = exc

    def join(self, timeout: float = 30.0) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"run() did not return within {timeout} s"
        if self.error is not None:
            raise self.error
        return self.status


def quick(out: Lines, **overrides) -> dict:
    return {
        "first_backoff": 0.2,
        "max_backoff": 0.8,
        "stable_after": 60.0,
        "give_up_deaths": 5,
        "give_up_window": 60.0,
        "stop_timeout": 5.0,
        "poll_interval": 0.02,
        "handle_signals": False,
        "out": out,
        **overrides,
    }


def test_how_a_child_ended_is_said_as_people_read_it():
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-signal.SIGTERM) == "signal SIGTERM"


def test_a_dead_child_is_restarted_after_a_backoff_that_doubles_and_each_death_is_said(
    tmp_path,
):
    folder = tmp_path / "runs"
    out = Lines()
    supervisor = Supervisor([runs_child("worker", folder, "kill,exit3,stay")], **quick(out))
    running = InThread(supervisor, ["worker"])

    # The third run records itself as the supervisor says it started it: wait for both.
    third = wait_until(
        lambda: len(out.said("worker started again")) == 2 and run_record(folder, 3),
        START,
        lambda: f"a third run\n{out}",
    )
    first, second = run_record(folder, 1), run_record(folder, 2)
    assert out.lines[:4] == [
        "worker exited with signal SIGKILL: restarting it in 0.2 s (restart 1)",
        f"worker started again (pid {second[0]})",
        "worker exited with exit code 3: restarting it in 0.4 s (restart 2)",
        f"worker started again (pid {third[0]})",
    ], str(out)
    # The backoff is waited out: each run starts at least that long after the one before.
    assert second[1] - first[1] >= 0.2, (first, second)
    assert third[1] - second[1] >= 0.4, (second, third)
    assert supervisor.process("worker").pid == third[0]

    supervisor.request_stop()
    assert running.join() == 0
    assert supervisor.process("worker").returncode == -signal.SIGTERM
    assert out.lines[4:] == ["asked to stop: stopping worker"], str(out)


def test_the_backoff_starts_again_for_a_child_that_had_stayed_up(tmp_path):
    folder = tmp_path / "runs"
    out = Lines()
    supervisor = Supervisor(
        [runs_child("web", folder, "exit3,stay")], **quick(out, first_backoff=0.1, stable_after=1)
    )
    running = InThread(supervisor, ["web"])

    pid, started = wait_until(lambda: run_record(folder, 2), START, lambda: f"run 2\n{out}")
    # Dead after staying up longer than stable_after: no longer 0.2 s, 0.1 s again.
    wait_until(lambda: time.monotonic() - started > 1.2, 5, "web to have stayed up 1 s")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: run_record(folder, 3), START, lambda: f"run 3\n{out}")
    assert out.said("web exited") == [
        "web exited with exit code 3: restarting it in 0.1 s (restart 1)",
        "web exited with signal SIGKILL: restarting it in 0.1 s (restart 2)",
    ], str(out)

    supervisor.request_stop()
    assert running.join() == 0


def test_a_child_that_keeps_dying_stops_everything_with_status_1(tmp_path):
    out = Lines()
    supervisor = Supervisor(
        [
            runs_child("steady", tmp_path / "steady", "stay"),
            runs_child("beat", tmp_path / "beat", "exit3"),
        ],
        **quick(out, first_backoff=0.05, give_up_deaths=3),
    )
    running = InThread(supervisor, ["steady", "beat"])

    assert running.join(timeout=START) == 1, str(out)
    assert out.said("beat exited") == [
        "beat exited with exit code 3: restarting it in 0.05 s (restart 1)",
        "beat exited with exit code 3: restarting it in 0.1 s (restart 2)",
        "beat exited with exit code 3: it died 3 times within 60 s, so it is not restarted; "
        "stopping everything",
    ], str(out)
    assert len(list((tmp_path / "beat").glob("run*"))) == 3
    # The steady child was stopped, gracefully, and is gone.
    steady = supervisor.process("steady")
    assert steady.returncode == -signal.SIGTERM
    assert not out.said("steady exited"), str(out)


def start_supervisor(tmp_path: Path, children: dict[str, list[str]], **options):
    """The supervisor as its own process; its stderr goes to a file, returned with it."""
    log = tmp_path / "supervisor.log"
    options = {"first_backoff": 0.2, "poll_interval": 0.02, **options}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, json.dumps(list(children.items())),
             json.dumps(options)],
            cwd=BASE_DIR,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, log


def children_up(tmp_path: Path, names: list[str]) -> list[int]:
    records = [run_record(tmp_path / name, 1) for name in names]
    return [record[0] for record in records] if all(records) else []


def test_sigterm_stops_every_child_and_kills_one_that_ignores_it(tmp_path):
    polite = runs_child("polite", tmp_path / "polite", "stay").argv
    stubborn = runs_child("stubborn", tmp_path / "stubborn", "stay", "stubborn").argv
    process, log = start_supervisor(
        tmp_path, {"polite": polite, "stubborn": stubborn}, stop_timeout=1.0
    )
    try:
        pids = wait_until(
            lambda: children_up(tmp_path, ["polite", "stubborn"]), START, log.read_text
        )
        # The stubborn child has its SIGTERM ignored before it records its run.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=START) == 0, log.read_text()
        wait_until(lambda: not any(alive(pid) for pid in pids), 5, "both children to be gone")
        text = log.read_text()
        assert "SIGTERM: stopping polite, stubborn" in text, text
        assert "stubborn did not stop within 1 s: killing it" in text, text
        assert "polite did not stop" not in text, text
        assert "exited with" not in text, text  # a stop is not a death: nothing restarted
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_sigkilled_supervisor_leaves_no_child_behind(tmp_path):
    names = ["web", "worker", "beat"]
    children = {name: runs_child(name, tmp_path / name, "stay").argv for name in names}
    process, log = start_supervisor(tmp_path, children)
    try:
        pids = wait_until(lambda: children_up(tmp_path, names), START, log.read_text)
        assert all(alive(pid) for pid in pids)
        process.kill()  # no chance to stop anything itself
        process.wait(timeout=10)
        wait_until(
            lambda: not any(alive(pid) for pid in pids),
            10,
            lambda: f"the children {[p for p in pids if alive(p)]} to die with the supervisor",
        )
    finally:
        for pid in children_up(tmp_path, names):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
