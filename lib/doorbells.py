"""Doorbells: a waiting process is told at once that there is something to look at.

The folder broker has no file descriptor that says "a message arrived", so its consumers
poll; a poll every 0.1 s costs a message up to 0.1 s on each hop, and a deploy makes
several hops. A consumer hangs a doorbell in the folder: a named pipe (FIFO) it reads,
watched by its event loop. A sender rings every doorbell there after it has put a message
in place, and the consumer looks at once.

A ring is only a hint, never the message: a consumer still polls, more slowly, so a ring
that is lost (the pipe full, a doorbell being replaced) costs at most one poll. Ringing
never blocks and never fails the sender.

* A doorbell appears with its reader already listening: it is made under a temporary name,
  opened, then renamed into place (as messages are).
* A doorbell nobody reads any more is taken down by the next ring: opening a FIFO for
  writing without blocking fails (ENXIO) only when no process has it open for reading,
  and its owner keeps it open from before it was in place until after it was removed.
* A consumer holds a write end of its own doorbell too, so the pipe never reads as closed
  (which would wake its loop without end) and so it can ring itself.

No Django here. POSIX only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

FOLDER = "doorbells"


def ring_all(root: Path) -> int:
    """Ring every doorbell hung under `root`; returns how many were rung."""
    folder = Path(root) / FOLDER
    try:
        names = os.listdir(folder)
    except OSError:  # none hung yet (or unreadable): the consumers' polls will do
        return 0
    rung = 0
    for name in names:
        if name.startswith("."):
            continue  # one being hung
        if _ring(folder / name):
            rung += 1
    return rung


def _ring(path: Path) -> bool:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return False  # taken down meanwhile
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            # Nobody reads it: its consumer is gone without taking it down.
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        return False
    try:
        os.write(descriptor, b"\0")
    except BlockingIOError:
        pass  # full of rings not yet heard: one more says nothing new
    except OSError:
        return False
    finally:
        os.close(descriptor)
    return True


class Doorbell:
    """One consumer's doorbell under `root`; `fileno()` is readable once it has been rung."""

    def __init__(self, root: Path):
        folder = Path(root) / FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        hanging = folder / f".{name}"
        os.mkfifo(hanging, 0o600)
        try:
            self._reader = os.open(hanging, os.O_RDONLY | os.O_NONBLOCK)
            self._writer = os.open(hanging, os.O_WRONLY | os.O_NONBLOCK)
            self.path = folder / name
            os.rename(hanging, self.path)
        except BaseException:
            hanging.unlink(missing_ok=True)
            raise

    def fileno(self) -> int:
        return self._reader

    def heard(self) -> bool:
        """Empty the pipe; whether it had been rung since the last call."""
        rung = False
        while True:
            try:
                if not os.read(self._reader, 4096):
                    return rung
            except BlockingIOError:
                return rung
            rung = True

    def ring(self) -> None:
        """Ring this doorbell from its own process (look again, there may be more)."""
        try:
            os.write(self._writer, b"\0")
        except BlockingIOError:
            pass

    def close(self) -> None:
        # Removed while still read, so no ring ever meets a pipe nobody reads and unlinks
        # a doorbell another consumer has since hung (names are never reused anyway).
        self.path.unlink(missing_ok=True)
        os.close(self._writer)
        os.close(self._reader)
