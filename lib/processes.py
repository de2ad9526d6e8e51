"""Facts about processes on this machine, and children that do not outlive their parent.

Plain Python, no Django. Linux gives the most: the kernel's start time of a process (so a
reused pid is not taken for the process that had it) and PR_SET_PDEATHSIG (so a child is
signalled when the process that started it dies, even by SIGKILL). Elsewhere the start time
is unknown and children may outlive their parent.
"""

import ctypes
import os
import socket
import sys

# <sys/prctl.h>
PR_SET_PDEATHSIG = 1


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Looked up once here, in the parent: a child between fork and exec should only call
        # a function, not load a library.
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()


def can_die_with_parent() -> bool:
    return _prctl is not None


def die_with_parent(parent_pid: int, signal_number: int):
    """A preexec_fn that has the kernel send `signal_number` to the child when the thread
    that started it ends (in practice: when its parent process dies, SIGKILL included).

    PR_SET_PDEATHSIG rather than a watchdog: the kernel delivers it even when the parent had
    no chance to run any code, and no extra process is needed, which could itself be killed.
    It covers the direct child only. None where the platform has no such thing.
    """
    if _prctl is None:
        return None

    def preexec() -> None:
        if _prctl(PR_SET_PDEATHSIG, int(signal_number), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        # The parent may have died between fork and prctl: then no signal will ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (Linux), so a reused pid is not taken for its owner."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # Field 22, counted after the command name, which is in parentheses and may hold spaces.
    return stat.rpartition(")")[2].split()[19]


def process_alive(pid: int, start_time: str = "") -> bool:
    """Is `pid` running, and (when `start_time` is known) the same process that had it?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: alive
    current = process_start_time(pid)
    return current is None or start_time in ("", current)


def this_process() -> str:
    """'<host>:<pid>:<start time>': who holds something, for `holder_is_gone`."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or ''}"


def holder_is_gone(holder: str) -> bool:
    """True only for a holder of this host (this_process()) whose process no longer runs;
    a holder on another machine cannot be checked from here."""
    host, pid_text, start_time = _split_holder(holder)
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    return not process_alive(int(pid_text), start_time)


def _split_holder(holder: str) -> tuple[str, str, str]:
    head, _, start_time = holder.rpartition(":")
    host, _, pid_text = head.rpartition(":")
    return host, pid_text, start_time
