import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from moto import mock_aws

from clusters.health import notices
from clusters.targets.ecs import forget_clients
from deploys import dispatch
from deploys.models import Application
from devtools.demo import create_demo_remote
from devtools.ecs_simulator import EcsSimulator
from tests import docker_engine as engines

# Keeps what the app writes and looks in it for the secrets the tests hand it.
pytest_plugins = ["tests.secret_watch"]

# The demo's checks without its pauses: the same scripts, so branches pass, fail and flake.
FAST_BUILD = "sh -c " + shlex.quote(
    "for check in lint unit integration; do sh checks/$check.sh || exit 1; done"
)


@dataclass
class SentTasks:
    """Step tasks sent while a test ran, for tests that drive the pipeline themselves."""

    sent: list[tuple[str, int]] = field(default_factory=list)
    # Ticks asked for after a pause (a rollout watching ECS): run when the test says so.
    later: list[tuple[str, int]] = field(default_factory=list)
    # Cluster report notices queued (clusters/health/notices.py): (report id, slug, opened).
    notices: list[tuple[int, str, bool]] = field(default_factory=list)
    # The countdown each paused tick asked for (None: the poll).
    countdowns: list[float | None] = field(default_factory=list)

    def run_all(self) -> None:
        """Run the sent steps in this process, in order, until none is left."""
        from celery import current_app

        current_app.loader.import_default_modules()  # the tasks modules, as a worker would
        while self.sent:
            task_name, deploy_id = self.sent.pop(0)
            current_app.tasks[task_name].apply(args=[deploy_id], throw=True)

    def pause(self, task_name: str, deploy_id: int, countdown: float | None) -> None:
        self.later.append((task_name, deploy_id))
        self.countdowns.append(countdown)

    def release_later(self) -> int:
        """Make the paused ticks due now; returns how many there were."""
        count = len(self.later)
        self.sent.extend(self.later)
        self.later.clear()
        return count


@pytest.fixture(autouse=True)
def sent_tasks(request, monkeypatch, settings, tmp_path):
    """Keep step tasks (and cluster report notices) off the broker unless the test runs a real
    worker."""
    settings.FC_WORK_DIR = tmp_path / "work"
    recorder = SentTasks()
    if "worker" not in request.fixturenames:
        monkeypatch.setattr(
            dispatch, "send_task", lambda name, deploy_id: recorder.sent.append((name, deploy_id))
        )
        monkeypatch.setattr(
            dispatch,
            "send_task_later",
            lambda name, deploy_id, countdown=None: recorder.pause(name, deploy_id, countdown),
        )
        monkeypatch.setattr(notices, "send", lambda *args: recorder.notices.append(args))
    return recorder


@pytest.fixture
def drive(sent_tasks, django_capture_on_commit_callbacks):
    """Run every step the deploys ask for until they rest, as a worker would."""

    def run():
        for _ in range(20):
            with django_capture_on_commit_callbacks(execute=True):
                sent_tasks.run_all()
            if not sent_tasks.sent:
                return
        raise AssertionError(f"the pipeline did not come to rest: {sent_tasks.sent}")

    return run


@pytest.fixture
def simulator(monkeypatch, settings):
    """moto in this process with the ECS simulator; its clock moves only when a test says."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-key-for-tests",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    settings.FC_AWS_MAX_ATTEMPTS = 2
    with mock_aws(), EcsSimulator(task_start_seconds=1, task_fail_after_seconds=1) as sim:
        yield sim


def clear_caches() -> None:
    """Every cache emptied: branch lists, deploy durations, the dashboard's rows."""
    from django.core.cache import caches

    for cache in caches.all():
        cache.clear()


@pytest.fixture(autouse=True)
def empty_cache():
    """Each test starts with nothing cached."""
    clear_caches()
    forget_clients()  # each test's AWS (moto in process, or a server) gets its own clients
    yield
    clear_caches()
    forget_clients()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is slow on purpose; tests make many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="session")
def demo_remote_template(tmp_path_factory) -> Path:
    return create_demo_remote(tmp_path_factory.mktemp("remotes") / "demo-shop.git")


@pytest.fixture
def demo_remote(tmp_path, demo_remote_template) -> Path:
    """A fresh copy of the demo's bare remote for each test, so pushes do not leak."""
    import shutil

    copy = tmp_path / "remote" / "demo-shop.git"
    shutil.copytree(demo_remote_template, copy)
    return copy


@pytest.fixture
def user(db):
    from tests.people import maintainer

    return maintainer("alice")


@pytest.fixture
def other_user(db):
    from tests.people import maintainer

    return maintainer("bob")


@pytest.fixture
def logged_in(client, user):
    """The test client, logged in as `user`."""
    client.force_login(user)
    return client


@pytest.fixture
def api(user):
    """The API as the logged-in `user`."""
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def application(db, demo_remote) -> Application:
    return Application.objects.create(
        slug="demo-shop",
        name="Demo shop",
        git_remote_url=str(demo_remote),
        default_branch="main",
        build_command=FAST_BUILD,
        build_timeout_seconds=60,
    )


# The safety net, quicker than its defaults, for the shared embedded server's processes: a
# step lost to a killed pool process comes back in seconds, not half a minute.
QUICK_SAFETY_NET = {"FC_STALL_AFTER": "5", "FC_RESUME_INTERVAL": "2", "FC_ROLLOUT_STALL_AFTER": "5"}


@pytest.fixture(scope="session")
def embedded_default(request, tmp_path_factory):
    """`make run` in a temporary FC_VAR_DIR on a free port, started once for the modules that
    only drive it (test_embedded_default, test_embedded_reliability): yields an EmbeddedServer.
    Its log is shown if a test failed while it ran."""
    from tests.embedded_server import embedded_for_tests

    with embedded_for_tests(
        request,
        tmp_path_factory,
        "embedded-var",
        "a test of the embedded default",
        extra_env=QUICK_SAFETY_NET,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def docker_engine():
    """A real Docker engine (tests/docker_engine.py): DOCKER_HOST's, or a private dockerd for
    the run. Skipped with the reason where none can be had; in CI that fails instead."""
    try:
        engine = engines.engine_from_environment() or engines.start_private_engine()
    except engines.NoEngine as exc:
        if engines.must_run_docker_tests():
            pytest.fail(f"CI must run the Docker tests, but there is no engine: {exc}")
        pytest.skip(f"no Docker engine, so the Docker tests do not run: {exc}")
    yield engine
    engines.stop_private_engine(engine)
