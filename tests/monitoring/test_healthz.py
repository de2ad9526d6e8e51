"""/healthz: 200 when the database, the broker, a worker and beat are all well; 503 naming
the part that is not. No login needed."""

import time
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from fatcontroller.celery import app as celery_app
from monitoring import health, heartbeats
from monitoring.models import Heartbeat
from tests.ports import closed_port


@pytest.fixture
def alive(db):
    """A worker and beat that have just done something."""
    heartbeats.record("worker", "celery@worker-1")
    heartbeats.record("beat")


def test_all_is_well_without_a_login(client, alive):
    response = client.get("/healthz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert body["failing"] == []
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True,
        "broker": True,
        "worker": True,
        "beat": True,
    }
    assert body["checks"]["worker"]["silent_seconds"] < 5
    assert response["Cache-Control"].startswith("max-age=0")


def test_a_database_that_does_not_answer_is_named(client, alive, monkeypatch):
    def refuse():
        raise OperationalError('connection to server at "db.internal" failed: refused')

    monkeypatch.setattr(health, "_select_one", refuse)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["database"]
    assert body["checks"]["database"] == {"ok": False, "error": "no answer (OperationalError)"}
    # What needs the database is not checked rather than called failing.
    assert body["checks"]["worker"]["ok"] is None
    assert "db.internal" not in response.content.decode()  # hosts stay in the log


def test_an_unreachable_broker_is_named_quickly(client, alive, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", f"redis://127.0.0.1:{closed_port()}/0")
    started = time.monotonic()
    response = client.get("/healthz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_a_silent_worker_is_named(client, alive, settings):
    settings.FC_HEALTH_WORKER_SILENT = 120
    Heartbeat.objects.filter(role="worker").update(seen_at=timezone.now() - timedelta(seconds=121))
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert body["checks"]["worker"]["error"] == "silent for more than 120 s"
    assert body["checks"]["worker"]["silent_seconds"] >= 121


def test_the_freshest_worker_counts(client, alive):
    # One worker of two went away: the other still works the queues.
    Heartbeat.objects.create(
        role="worker", host="celery@gone", seen_at=timezone.now() - timedelta(hours=3)
    )
    assert client.get("/healthz").status_code == 200


def test_beat_that_never_reported_is_named(client, db):
    heartbeats.record("worker", "celery@worker-1")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["beat"]
    assert response.json()["checks"]["beat"]["error"] == "no beat has ever reported"


def test_beat_silent_defaults_to_three_safety_net_intervals(settings):
    assert settings.FC_HEALTH_BEAT_SILENT == 3 * settings.FC_RESUME_INTERVAL


def test_a_heartbeat_is_written_at_most_every_few_seconds(db, settings):
    settings.FC_HEARTBEAT_SECONDS = 60
    assert heartbeats.record("worker", "celery@w") is True
    first = Heartbeat.objects.get(role="worker").seen_at
    assert heartbeats.record("worker", "celery@w") is False
    assert Heartbeat.objects.get(role="worker").seen_at == first
    assert heartbeats.record("worker", "celery@other") is True  # another host, another row
    assert Heartbeat.objects.filter(role="worker").count() == 2
