"""Is Fat Controller working? Four checks, each cheap and bounded in time.

* database: a SELECT 1 on the default connection.
* broker: a fresh connection through the Celery app (never the pool, whose connections may
  be stale), with FC_HEALTH_BROKER_TIMEOUT to connect and no retries. Only kombu's generic
  Connection API is used, so any transport works: Redis (connecting pings it), the embedded
  default's folder.
* worker, beat: how long since any worker (beat) last recorded a heartbeat
  (monitoring.heartbeats), against FC_HEALTH_WORKER_SILENT (FC_HEALTH_BEAT_SILENT).

What a check says is for anyone who can reach /healthz, which needs no login: the kind of
error, never its text (a broker or database error may name hosts); the text is logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from fatcontroller.celery import app as celery_app

from . import heartbeats

log = logging.getLogger(__name__)


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not checked, because what it needs is down
    facts: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {"ok": self.ok, **self.facts}


def run_checks() -> list[Check]:
    database = check_database()
    checks = [database, check_broker()]
    for role, limit in (
        ("worker", settings.FC_HEALTH_WORKER_SILENT),
        ("beat", settings.FC_HEALTH_BEAT_SILENT),
    ):
        if database.ok:
            checks.append(check_heartbeat(role, limit))
        else:
            checks.append(Check(role, None, {"error": "not checked: the database is down"}))
    return checks


def report(checks: list[Check]) -> tuple[int, dict]:
    """The HTTP status and body of /healthz: 200 when every check passed, else 503 naming
    the checks that failed."""
    failing = [check.name for check in checks if check.ok is False]
    body = {
        "status": "failing" if failing else "ok",
        "failing": failing,
        "checks": {check.name: check.as_json() for check in checks},
    }
    return (503 if failing else 200), body


def check_database() -> Check:
    try:
        _select_one()
    except DatabaseError as exc:
        log.warning("health: the database did not answer: %s", exc)
        return Check("database", False, {"error": f"no answer ({type(exc).__name__})"})
    return Check("database", True)


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_broker() -> Check:
    timeout = settings.FC_HEALTH_BROKER_TIMEOUT
    try:
        with celery_app.connection_for_write(
            connect_timeout=timeout,
            # Read by the Redis transport, ignored by the others; without them a Redis host
            # that drops packets would hold this request for the OS's connect timeout.
            transport_options={"socket_connect_timeout": timeout, "socket_timeout": timeout},
        ) as broker:
            broker.ensure_connection(max_retries=0, timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - whatever the transport raises, the broker is down
        log.warning("health: the broker did not answer: %s", exc)
        return Check("broker", False, {"error": f"no answer ({type(exc).__name__})"})
    return Check("broker", True)


def check_heartbeat(role: str, limit: float) -> Check:
    try:
        seen = heartbeats.last_seen(role)
    except DatabaseError as exc:  # the table is missing: `manage.py migrate` was not run?
        log.warning("health: could not read the %s heartbeats: %s", role, exc)
        return Check(role, False, {"error": f"unreadable ({type(exc).__name__})"})
    if seen is None:
        return Check(role, False, {"error": f"no {role} has ever reported", "limit": limit})
    silent = max((timezone.now() - seen).total_seconds(), 0.0)
    facts = {"silent_seconds": round(silent, 1), "limit": limit}
    if silent > limit:
        return Check(role, False, {**facts, "error": f"silent for more than {limit:g} s"})
    return Check(role, True, facts)
