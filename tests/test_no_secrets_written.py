"""No secret the tests handed the app (Jenkins tokens, AWS keys, webhook URLs, hook secrets,
the SSO client secret, the metrics token, the secret key) appears in anything the suite
wrote: logs, pages, API answers, database rows (events, audit entries), commands' output,
the files of servers and workers. tests/secret_watch.py keeps and looks; this file runs
last (the plugin orders it so) and reads its findings.

The first tests show the watch would see a secret in each place it looks, so that the last
one cannot pass by looking nowhere."""

import logging
import os
import uuid

import pytest
from django.contrib.auth.models import Group

from tests import secret_watch
from tests.secret_watch import WATCH


@pytest.fixture
def canary(monkeypatch):
    """A secret of the watch's own, and the writes of this test kept apart from the run's."""
    value = f"canary-{uuid.uuid4().hex}"
    monkeypatch.setenv("FC_WEBHOOK_URL_CANARY", value)
    WATCH.learn()
    with WATCH.lock:
        earlier, WATCH.writes = WATCH.writes, []
    yield value
    with WATCH.lock:
        WATCH.writes = earlier
    del WATCH.secrets[value]


def seen(value) -> set[str]:
    with WATCH.lock:
        return {where for where, text in WATCH.writes if value in text}


def test_the_watch_sees_a_secret_in_a_log_line(canary):
    # Handed to the logger as any record is, whatever level earlier tests left it at.
    logger = logging.getLogger("fatcontroller.canary")
    logger.handle(logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "posting to %s",
                                    (canary,), None))  # fmt: skip
    assert seen(canary) == {"a log record of fatcontroller.canary"}


@pytest.mark.django_db
def test_the_watch_sees_a_secret_in_an_answer(canary, logged_in):
    logged_in.get("/login/", {"next": f"/{canary}"})
    assert "the answer to GET /login/" in seen(canary)


@pytest.mark.django_db
def test_the_watch_sees_a_secret_in_a_row(canary):
    Group.objects.bulk_create([Group(name=canary)])
    assert any(where.startswith("a row written by INSERT") for where in seen(canary))


def test_the_watch_sees_a_secret_in_a_file(canary, tmp_path):
    (tmp_path / "worker.log").write_text(f"posted to {canary}\n")
    before = len(WATCH.findings)
    WATCH.look_in_files(tmp_path)
    found, WATCH.findings[before:] = WATCH.findings[before:], []
    assert [(f.secret_name, f.where) for f in found] == [
        ("FC_WEBHOOK_URL_CANARY", str(tmp_path / "worker.log"))
    ]


@pytest.fixture
def handed_secrets(monkeypatch, settings):
    """Secrets handed the app as the suite's fixtures do: one in the environment, one in the
    settings."""
    handed = {"FC_HOOK_SECRET_SHOP": f"hook-{uuid.uuid4().hex}"}
    monkeypatch.setenv("FC_HOOK_SECRET_SHOP", handed["FC_HOOK_SECRET_SHOP"])
    settings.JENKINS_TOKEN = handed["JENKINS_TOKEN"] = f"jenkins-{uuid.uuid4().hex}"
    yield handed
    for value in handed.values():
        WATCH.secrets.pop(value, None)


def test_the_watch_learns_the_secrets_a_test_hands_the_app(handed_secrets):
    for name, value in handed_secrets.items():
        assert WATCH.secrets.get(value) == name
    assert WATCH.secrets.get(os.environ["SECRET_KEY"]) == "SECRET_KEY"
    assert not {n for n in WATCH.secrets.values() if not secret_watch.SECRET_NAME.search(n)}


def test_no_secret_in_anything_the_suite_wrote(tmp_path_factory):
    from django.conf import settings

    WATCH.look()
    WATCH.look_in_files(tmp_path_factory.getbasetemp(), settings.VAR_DIR)
    findings = sorted({str(finding) for finding in WATCH.findings})
    assert not findings, f"{len(findings)} secrets written:\n" + "\n".join(findings[:50])
    assert secret_watch.FINAL_TEST == os.path.basename(__file__)
