"""LOG_FORMAT=json: one JSON object per line, carrying the deploy id while the code works on
one (a task about a deploy, a request for a deploy's page or API); a bad value fails at start."""

import io
import json
import logging
import subprocess
import textwrap

import pytest
from celery import current_app

from deploys import actions
from deploys.states import Mode
from monitoring import logs

from .conftest import PYTHON, child_env


@pytest.fixture
def json_lines():
    """What the root logger writes through the JSON formatter and the deploy id filter, as
    the console handler does with LOG_FORMAT=json."""
    # First: loading the tasks modules runs django.setup(), which configures logging afresh.
    current_app.loader.import_default_modules()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.json_formatter())
    handler.addFilter(logs.DeployIdFilter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_a_task_about_a_deploy_logs_its_id(application, user, json_lines):
    deploy = actions.queue_deploy(
        application=application.slug,
        branch="feature/clean-merge",
        mode=Mode.MERGE_ONLY,
        requester=user,
    )
    # Still queued: the merging step says it has nothing to do, from inside the task.
    current_app.tasks["deploys.tasks.make_candidate"].apply(args=[deploy.pk], throw=True)
    logging.getLogger("after").info("the task is over")

    lines = json_lines()
    skipped = [line for line in lines if "step skipped" in line["message"]]
    assert skipped, lines
    assert skipped[0]["deploy_id"] == deploy.pk
    assert skipped[0]["level"] == "INFO"
    assert skipped[0]["logger"] == "deploys.steps"
    assert "deploy_id" not in lines[-1]  # cleared when the task ended
    assert logs.current_deploy.get() is None


def test_a_task_takes_deploy_id_by_keyword_too(application, user):
    task = current_app.tasks["builds.tasks.sync_build"]
    assert logs.deploy_id_of(task, (), {"deploy_id": "12"}) == 12
    assert logs.deploy_id_of(task, (12,), {}) == 12
    # A task whose first argument is something else says no deploy.
    assert logs.deploy_id_of(current_app.tasks["deploys.tasks.post_webhook"], (5,), {}) is None


def test_a_request_for_a_deploy_logs_its_id(client, user, json_lines):
    client.force_login(user)
    response = client.get("/api/deploys/424242/")
    assert response.status_code == 404
    not_found = [line for line in json_lines() if line["logger"] == "django.request"]
    assert not_found and not_found[0]["deploy_id"] == 424242
    assert logs.current_deploy.get() is None  # cleared when the request finished

    client.get("/healthz")
    assert all("deploy_id" not in line for line in json_lines() if "healthz" in line["message"])


def test_the_settings_switch_the_console_to_json(tmp_path):
    script = textwrap.dedent(
        """
        import django, logging
        django.setup()
        from monitoring.logs import current_deploy
        current_deploy.set(7)
        logging.getLogger("deploys.pipeline").warning("merged %s", "feature/x")
        current_deploy.set(None)
        logging.getLogger("deploys.pipeline").warning("idle")
        """
    )
    done = subprocess.run(
        [PYTHON, "-c", script],
        env={**child_env(), "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert lines[0]["message"] == "merged feature/x"
    assert lines[0]["deploy_id"] == 7
    assert lines[0]["level"] == "WARNING"
    assert "asctime" in lines[0]
    assert "deploy_id" not in lines[1]


def test_plain_stays_the_default(tmp_path):
    env = child_env()
    env.pop("LOG_FORMAT", None)
    done = subprocess.run(
        [
            PYTHON,
            "-c",
            "import django, logging; django.setup(); logging.getLogger('x').warning('hi')",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().endswith("WARNING x: hi")


def test_a_bad_log_format_fails_at_start():
    done = subprocess.run(
        [PYTHON, "-c", "import django; django.setup()"],
        env={**child_env(), "LOG_FORMAT": "xml"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: LOG_FORMAT must be plain or json, not 'xml'" in done.stderr
