"""Workers and beat are other processes: what they count and when they last worked must
reach /metrics and /healthz of the web process, through the database."""

import signal
import subprocess
import textwrap

import pytest
from django.conf import settings
from django.db import connection

from fatcontroller.celery import app as celery_app
from monitoring.models import Heartbeat
from tests.waiting import wait_until
from tests.workers import worker_in_this_process

from .conftest import PYTHON, child_env, sample

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs PostgreSQL (make test sets DATABASE_URL)"
)

COUNT_IN_A_CHILD = textwrap.dedent(
    """
    import django
    django.setup()
    from monitoring import metrics
    for _ in range({times}):
        metrics.count("fc_safety_net_rescues_total", step="building")
        metrics.observe("fc_step_duration_seconds", 2.0, state="building")
    """
)


def test_counts_from_separate_processes_add_up(transactional_db, scrape):
    # Four processes at once, all starting with no row: they race to insert it, then to add.
    children = [
        subprocess.Popen(
            [PYTHON, "-c", COUNT_IN_A_CHILD.format(times=25)],
            env=child_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    samples = scrape()
    assert sample(samples, "fc_safety_net_rescues_total", step="building") == 100
    assert sample(samples, "fc_step_duration_seconds_count", state="building") == 100
    assert sample(samples, "fc_step_duration_seconds_bucket", state="building", le="5.0") == 100
    assert sample(samples, "fc_step_duration_seconds_sum", state="building") == 200.0


@pytest.fixture
def worker(transactional_db, settings):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (make test sets REDIS_URL)")
    with worker_in_this_process(settings) as w:
        yield w


def test_a_real_worker_records_its_heartbeat_as_it_works(worker, client):
    Heartbeat.objects.all().delete()  # worker_ready may have written one already
    celery_app.send_task("builds.tasks.poll_builds")
    beat = wait_until(
        lambda: Heartbeat.objects.filter(role="worker").first(), 30, "a worker heartbeat"
    )
    assert beat.host  # the worker's node name
    body = client.get("/healthz").json()
    assert body["checks"]["worker"]["ok"] is True


def test_a_real_beat_records_its_heartbeat(transactional_db, tmp_path, client):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis: beat sends what it schedules to the broker")
    env = {**child_env(), "FC_BUILD_POLL_SECONDS": "0.5", "FC_HEARTBEAT_SECONDS": "0.5"}
    beat = subprocess.Popen(
        [PYTHON, "-m", "celery", "-A", "fatcontroller", "beat", "--loglevel=WARNING",
         "--schedule", str(tmp_path / "schedule")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        first = wait_until(lambda: Heartbeat.objects.filter(role="beat").first(), 30, "beat")
        # Then again as it sends the build poll.
        wait_until(
            lambda: Heartbeat.objects.get(pk=first.pk).seen_at > first.seen_at,
            30,
            "a second beat heartbeat",
        )
        assert client.get("/healthz").json()["checks"]["beat"]["ok"] is True
    finally:
        beat.send_signal(signal.SIGTERM)
        try:
            beat.wait(timeout=10)
        except subprocess.TimeoutExpired:
            beat.kill()
            beat.wait()
    # What it sent is not left for another test's worker.
    with celery_app.connection_for_write() as broker:
        for queue in settings.CELERY_TASK_QUEUES:
            queue.bind(broker.default_channel).purge()
