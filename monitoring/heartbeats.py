"""When workers and beat last did something, kept as rows for /healthz on any machine.

A worker beats as it starts each task (and once when it is ready), beat as it starts and as it
sends each scheduled task: the safety net every FC_RESUME_INTERVAL, the build poll every few
seconds. A process writes its row at most every FC_HEARTBEAT_SECONDS, one UPDATE, so a busy
worker costs the database next to nothing. A failed write is logged and never fails the task.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from .models import Heartbeat

log = logging.getLogger(__name__)

_lock = threading.Lock()
# (role, host) -> time.monotonic() of this process's last write.
_written: dict[tuple[str, str], float] = {}


def record(role: str, host: str = "", *, force: bool = False) -> bool:
    """Say that `role` on `host` (default: this machine's name) is alive; returns whether a
    row was written (False when this process wrote one less than FC_HEARTBEAT_SECONDS ago)."""
    host = (host or socket.gethostname())[:255]
    now = time.monotonic()
    with _lock:
        last = _written.get((role, host))
        if not force and last is not None and now - last < settings.FC_HEARTBEAT_SECONDS:
            return False
        _written[(role, host)] = now
    try:
        _write(role, host, timezone.now())
    except DatabaseError:
        log.warning("the %s heartbeat of %s could not be written", role, host, exc_info=True)
        return False
    return True


def last_seen(role: str) -> datetime | None:
    """The latest heartbeat of `role` from any host, or None if none was ever written."""
    return Heartbeat.objects.filter(role=role).aggregate(last=Max("seen_at"))["last"]


def forget_writes() -> None:
    """Forget this process's throttle (for tests that write heartbeats one after another)."""
    with _lock:
        _written.clear()


def _write(role: str, host: str, seen_at: datetime) -> None:
    if Heartbeat.objects.filter(role=role, host=host).update(seen_at=seen_at):
        return
    try:
        with transaction.atomic():
            Heartbeat.objects.create(role=role, host=host, seen_at=seen_at)
    except IntegrityError:
        Heartbeat.objects.filter(role=role, host=host).update(seen_at=seen_at)
