"""Run a few long-lived child processes together: restart the one that dies, stop them all
on request, and leave none behind when the supervisor itself is killed.

What a Supervisor guarantees:

- A child that dies, whatever the reason (an exit code, a signal), is started again after a
  backoff: `first_backoff`, doubling at each death up to `max_backoff`, back to
  `first_backoff` once the child had stayed up `stable_after` seconds. Each death is one line
  on the output, such as "worker exited with signal SIGKILL: restarting it in 1 s (restart 1)".
  Whatever the dead child left in its process group is killed before it starts again, so a
  new child never runs beside the old one's leftovers.
- Everything stops only when asked (`request_stop()`, or SIGINT, SIGTERM or SIGHUP when the
  supervisor handles signals; a second one hurries the stop), or when one child dies
  `give_up_deaths` times within `give_up_window` seconds: that is said in one line and
  `run()` returns 1 (0 after a requested stop).
- Stopping is graceful: SIGTERM to every child, up to `stop_timeout` seconds for them to
  exit, then SIGKILL to the process group of each one left.
- On Linux, a child never outlives the supervisor, even a SIGKILLed one: the kernel sends
  it SIGTERM when the supervisor dies (PR_SET_PDEATHSIG, see lib/processes.py). The
  children are started (and `run()` is called) from one thread that outlives them: the
  kernel sends that signal when the *thread* that started a child ends.
- Each child is the leader of its own session and process group: a Ctrl-C in a terminal
  reaches only the supervisor, which stops the children once each and in order, and a
  SIGKILL to the group takes what the child started with it.

Plain Python, no Django: the tests drive it with small `python -c` children.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from .process_groups import kill_group, start_in_own_group

# Graceful, not SIGKILL: a Celery worker stops its own pool on SIGTERM (its pool processes
# carry PR_SET_PDEATHSIG=SIGKILL of their own, from Celery), and a task it is running ends
# before it goes, so a build's subprocess is not orphaned in the middle of a build.
DEATH_SIGNAL = signal.SIGTERM
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def describe_exit(returncode: int) -> str:
    """How a child ended, for people: "exit code 3", "signal SIGKILL"."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


@dataclass(frozen=True)
class ChildSpec:
    """What to run for one child: its name (in every line said about it), argv, env, cwd."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: str | os.PathLike | None = None


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restart_at: float | None = None  # set while it waits for its restart
    backoff: float = 0.0  # the delay before the next restart, unless it stayed up long enough
    restarts: int = 0
    deaths: deque = field(default_factory=deque)  # monotonic times, within give_up_window


class Supervisor:
    """Start children with `start(name)`, then `run()` until a stop; see the module's doc.

    Use it as a context manager: on the way out every child still running is stopped (and
    the signal handlers it installed are put back), whatever happened inside.
    """

    def __init__(
        self,
        children: Iterable[ChildSpec],
        *,
        first_backoff: float = 1.0,
        max_backoff: float = 30.0,
        stable_after: float = 60.0,
        give_up_deaths: int = 5,
        give_up_window: float = 60.0,
        stop_timeout: float = 10.0,
        poll_interval: float = 0.1,
        handle_signals: bool = True,
        out: TextIO | None = None,
    ):
        self._children = {spec.name: _Child(spec, backoff=first_backoff) for spec in children}
        self.first_backoff = first_backoff
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.give_up_deaths = give_up_deaths
        self.give_up_window = give_up_window
        self.stop_timeout = stop_timeout
        self.poll_interval = poll_interval
        self._handle_signals = handle_signals
        self._out = out
        self._old_handlers: dict[int, object] = {}
        self._stop_reason: str | None = None
        self._hurry = False
        self._stopped = False
        self.gave_up_on: str | None = None  # the child that kept dying, once run() gave up

    # -- the context manager and the signals ------------------------------------------------

    def __enter__(self) -> "Supervisor":
        if self._handle_signals:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("a Supervisor that handles signals runs in the main thread")
            for signum in STOP_SIGNALS:
                self._old_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._old_handlers.items():
                signal.signal(signum, handler)
            self._old_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        # Only flags: the loop and stop() act on them, so a signal never interrupts a start
        # halfway (a child started but not yet recorded would be missed by stop()).
        if self._stop_reason is None:
            self._stop_reason = signal.Signals(signum).name
        else:
            self._hurry = True

    def request_stop(self, reason: str = "asked to stop") -> None:
        """Have `run()` stop every child and return 0; safe from another thread."""
        if self._stop_reason is None:
            self._stop_reason = reason
        else:
            self._hurry = True

    @property
    def stop_requested(self) -> bool:
        return self._stop_reason is not None

    # -- the children -----------------------------------------------------------------------

    def start(self, name: str) -> subprocess.Popen:
        """Start the child `name` now (the first time; restarts are run()'s)."""
        child = self._children[name]
        if child.process is not None and child.process.poll() is None:
            raise RuntimeError(f"{name} is running already")
        return self._launch(child)

    def process(self, name: str) -> subprocess.Popen | None:
        """The child's current process (None before its first start)."""
        return self._children[name].process

    def _launch(self, child: _Child) -> subprocess.Popen:
        spec = child.spec
        child.restart_at = None
        child.process = start_in_own_group(
            spec.argv,
            env=None if spec.env is None else dict(spec.env),
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,  # its own session has no terminal to read from
            death_signal=DEATH_SIGNAL,
        )
        child.started_at = time.monotonic()
        return child.process

    def _started(self) -> list[_Child]:
        return [c for c in self._children.values() if c.process is not None]

    # -- supervising ------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise the started children until a stop is asked for (0) or one keeps dying
        (1); every child is stopped before it returns."""
        while True:
            if self._stop_reason is not None:
                names = ", ".join(c.spec.name for c in self._started())
                self._say(f"{self._stop_reason}: stopping {names}")
                self.stop()
                return 0
            now = time.monotonic()
            for child in self._started():
                if child.restart_at is not None:
                    if now >= child.restart_at:
                        process = self._launch(child)
                        self._say(f"{child.spec.name} started again (pid {process.pid})")
                elif child.process.poll() is not None:
                    if not self._died(child, now):
                        self.gave_up_on = child.spec.name
                        self.stop()
                        return 1
            time.sleep(self.poll_interval)

    def _died(self, child: _Child, now: float) -> bool:
        """Record a death and schedule the restart; False when the child keeps dying."""
        name, how = child.spec.name, describe_exit(child.process.returncode)
        kill_group(child.process.pid)  # what it started goes with it
        child.deaths.append(now)
        while child.deaths and child.deaths[0] < now - self.give_up_window:
            child.deaths.popleft()
        if len(child.deaths) >= self.give_up_deaths:
            self._say(
                f"{name} exited with {how}: it died {len(child.deaths)} times within "
                f"{_seconds(self.give_up_window)}, so it is not restarted; stopping everything"
            )
            return False
        if now - child.started_at >= self.stable_after:
            child.backoff = self.first_backoff  # it had settled: this death is a new story
        delay = child.backoff
        child.backoff = min(delay * 2, self.max_backoff)
        child.restarts += 1
        child.restart_at = now + delay
        self._say(
            f"{name} exited with {how}: restarting it in {_seconds(delay)} "
            f"(restart {child.restarts})"
        )
        return True

    def stop(self) -> None:
        """SIGTERM to every child, up to stop_timeout for them to go, then SIGKILL; once."""
        if self._stopped:
            return
        self._stopped = True
        # A child waiting for its restart is gone already, and its group was killed then.
        children = [c for c in self._started() if c.restart_at is None]
        # Last started, first stopped: the web before the worker, the AWS they use last.
        for child in reversed(children):
            if child.process.poll() is None:
                try:
                    child.process.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.stop_timeout
        while any(c.process.poll() is None for c in children):
            if self._hurry or time.monotonic() > deadline:
                break
            time.sleep(min(self.poll_interval, 0.05))
        for child in children:
            if child.process.poll() is None:
                self._say(
                    f"{child.spec.name} did not stop within {_seconds(self.stop_timeout)}: "
                    "killing it"
                )
            # Its whole group, even when it is gone: what it started (a pool) may be left.
            kill_group(child.process.pid)
        for child in children:
            try:
                child.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._say(f"{child.spec.name} (pid {child.process.pid}) outlived SIGKILL")

    def _say(self, line: str) -> None:
        out = self._out or sys.stderr
        out.write(line + "\n")
        out.flush()
