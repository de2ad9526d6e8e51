import os
import sys
from urllib.parse import quote

import pytest
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families

from monitoring import heartbeats

TOKEN = "scrape-me-" + "x" * 20


@pytest.fixture(autouse=True)
def fresh_heartbeats():
    """Each test writes its heartbeats afresh, whatever an earlier test wrote."""
    heartbeats.forget_writes()
    yield
    heartbeats.forget_writes()


@pytest.fixture
def metrics_token(settings):
    settings.FC_METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def scrape(client, metrics_token):
    """GET /metrics with the token; returns {(sample name, sorted labels): value}."""

    def run() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {metrics_token}")
        assert response.status_code == 200, response.content
        samples = {}
        for family in text_string_to_metric_families(response.content.decode()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples

    return run


def sample(samples, name, **labels) -> float | None:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


def child_env() -> dict[str, str]:
    """The environment of a child process that uses this test's database (pytest-django's
    test database, not the one DATABASE_URL names)."""
    db = connection.settings_dict
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{user}{password}@{host}/{db['NAME']}",
        "PYTHONPATH": os.getcwd(),
    }


PYTHON = sys.executable
