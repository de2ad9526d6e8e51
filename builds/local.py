"""The local build runner: the application's build command in a subprocess, on this machine.

Output is handed on in chunks while the command runs, so the log grows live. A timeout or an
abort (the deploy was cancelled) kills the command's whole process group.
"""

import codecs
import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lib.process_groups import kill_group, start_in_own_group

# The build command comes from the repository under test: it gets a plain environment, never
# the worker's own (which holds the database URL, the secret key and cloud credentials). Where
# AWS is (an endpoint and a region, no credentials) passes, so a build can push its image.
PASSED_THROUGH_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


@dataclass(frozen=True)
class BuildOutcome:
    passed: bool
    summary: str
    exit_code: int | None = None
    timed_out: bool = False
    aborted: bool = False


def split_command(command: str) -> list[str]:
    argv = shlex.split(command)
    if not argv:
        raise ValueError("the build command is empty")
    return argv


def build_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_THROUGH_ENV if name in os.environ}
    env.update(extra)
    return env


def run_command(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    on_output: Callable[[str], None],
    should_abort: Callable[[], bool] = lambda: False,
    flush_every: float = 0.5,
    abort_check_every: float = 1.0,
) -> BuildOutcome:
    try:
        # Its own process group, so a kill reaches its children.
        process = start_in_own_group(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Dies with the worker process running it (the OOM killer's SIGKILL included):
            # a build nobody watches must not go on in the checkout the next attempt uses.
            death_signal=signal.SIGKILL,
        )
    except OSError as exc:
        on_output(f"could not start {argv[0]}: {exc.strerror}\n")
        return BuildOutcome(passed=False, summary=f"could not start {argv[0]}: {exc.strerror}")

    chunks: queue.Queue[bytes | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process.stdout, chunks), daemon=True)
    reader.start()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending: list[str] = []
    started = time.monotonic()
    last_flush = last_abort_check = started
    stopped_because: str | None = None

    def flush() -> None:
        if pending:
            on_output("".join(pending))
            pending.clear()

    output_open = True
    try:
        while process.poll() is None:
            if output_open:
                try:
                    chunk = chunks.get(timeout=0.1)
                except queue.Empty:
                    chunk = b""
                if chunk is None:
                    output_open = False  # it may still run, writing elsewhere
                elif chunk:
                    pending.append(decoder.decode(chunk))
            else:
                try:
                    process.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            now = time.monotonic()
            if now - last_flush >= flush_every:
                flush()
                last_flush = now
            if stopped_because is None and now - started > timeout:
                stopped_because = "timeout"
                kill_group(process.pid)
            if stopped_because is None and now - last_abort_check >= abort_check_every:
                last_abort_check = now
                if should_abort():
                    stopped_because = "abort"
                    kill_group(process.pid)
    except BaseException:
        # Nobody would watch it any more: it must not run on unseen.
        kill_group(process.pid)
        raise

    # The command is done; whatever it left running in its group goes with it, which also
    # closes the output a background child may have held open.
    kill_group(process.pid)
    reader.join(timeout=5)
    while True:
        try:
            chunk = chunks.get_nowait()
        except queue.Empty:
            break
        if chunk:
            pending.append(decoder.decode(chunk))

    pending.append(decoder.decode(b"", final=True))
    exit_code = process.wait()
    if stopped_because == "timeout":
        pending.append(f"\n[fatcontroller] the build ran over its {timeout:g} s limit: stopped\n")
    elif stopped_because == "abort":
        pending.append("\n[fatcontroller] the build was aborted\n")
    flush()

    if stopped_because == "timeout":
        return BuildOutcome(False, f"timed out after {timeout:g} s", exit_code, timed_out=True)
    if stopped_because == "abort":
        return BuildOutcome(False, "aborted", exit_code, aborted=True)
    if exit_code == 0:
        return BuildOutcome(True, "exit code 0", exit_code)
    return BuildOutcome(False, f"exit code {exit_code}", exit_code)


def _pump(stream, chunks: queue.Queue) -> None:
    try:
        while data := os.read(stream.fileno(), 65536):
            chunks.put(data)
    finally:
        chunks.put(None)
