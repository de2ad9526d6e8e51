"""Children in a process group of their own, so that what they start can be stopped with them.

Plain Python, no Django. A child started here leads a new session (`start_new_session`), so
its pid is also the id of its process group, and every process it starts (a shell's commands,
git's helpers, a Celery pool) joins that group unless it moves itself out. Killing the group
then reaches them all, where killing the child alone would leave them running. A new session
also has no controlling terminal, so nothing in it can stop to prompt for a password; stdin
is /dev/null unless the caller says otherwise.

The kernel does not reuse a group's id while the group has a member, so signalling a group
whose leader has exited still reaches what it left behind; a group with nobody left is not an
error. POSIX only (Linux and macOS).
"""

import os
import signal
import subprocess
from collections.abc import Sequence

from lib.processes import die_with_parent


def start_in_own_group(
    argv: Sequence[str], *, death_signal: int | None = None, **popen_kwargs
) -> subprocess.Popen:
    """subprocess.Popen(argv) as the leader of a new process group.

    With death_signal, the kernel sends it to the child when this process dies (Linux; see
    lib.processes.die_with_parent), for a child that must not go on unwatched.
    """
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    if death_signal is not None:
        popen_kwargs["preexec_fn"] = die_with_parent(os.getpid(), death_signal)
    return subprocess.Popen(list(argv), start_new_session=True, **popen_kwargs)


def kill_group(pid: int, signal_number: int = signal.SIGKILL) -> None:
    """Send signal_number to every process in the group `pid` leads; a gone group is fine."""
    try:
        os.killpg(pid, signal_number)
    except (ProcessLookupError, PermissionError):
        # PermissionError: macOS answers so for a group of zombies; either way nobody is left
        # that a signal from us could reach.
        pass


def stop_group(process: subprocess.Popen, *, grace: float, reap_timeout: float = 10.0) -> int:
    """Stop a group politely, then for sure, and return its leader's exit status.

    SIGTERM to the whole group, up to `grace` seconds for the leader to exit (a leader that
    stops its own children waits for them first), then SIGKILL to the group for whatever is
    left, such as a stuck grandchild. grace=0 skips SIGTERM. Raises subprocess.TimeoutExpired
    if the leader is still not reaped `reap_timeout` seconds after SIGKILL.
    """
    if grace > 0:
        kill_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    kill_group(process.pid, signal.SIGKILL)
    return process.wait(timeout=reap_timeout)


def run_in_own_group(
    argv: Sequence[str], *, timeout: float | None, **popen_kwargs
) -> subprocess.CompletedProcess:
    """subprocess.run(argv, timeout=timeout), but a timeout kills the child's whole group.

    subprocess.run kills the child alone on a timeout, leaving whatever it started still at
    work. Here the group is killed, on a timeout or anything else that interrupts the wait
    (KeyboardInterrupt included), before the exception goes on. Output is captured as the
    caller's stdout/stderr arguments say (pipes for both unless given).
    """
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    with start_in_own_group(argv, **popen_kwargs) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException:
            kill_group(process.pid)
            # Reaps the leader; the pipes close because everything holding them was killed.
            process.communicate()
            raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
