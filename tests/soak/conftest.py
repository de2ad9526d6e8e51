"""The soak: load and faults against real workers. Long, so only with FC_SOAK=1 (`make soak`);
FC_SOAK_SHORT=1 as well runs the short version (fewer deploys, the tests marked `soak_short`)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from deploys.models import Application
from tests.deploys.test_rollout_worker_killed import purge_broker
from tests.people import maintainer

from . import world
from .world import Beat, Machines, SlowJenkins, simulated_aws, worker_env

NEEDS = "needs Redis and PostgreSQL (REDIS_URL, DATABASE_URL): the workers are other processes"


def pytest_configure(config):
    config.addinivalue_line("markers", "soak_short: also in the short soak (FC_SOAK_SHORT=1)")


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    mine = [item for item in items if here in Path(item.fspath).parents]
    if os.environ.get("FC_SOAK") != "1":
        skip = pytest.mark.skip(reason="the soak runs with FC_SOAK=1: make soak")
    elif (
        not django_settings.REDIS_URL
        or "postgresql" not in (django_settings.DATABASES["default"]["ENGINE"])
    ):
        skip = pytest.mark.skip(reason=NEEDS)
    elif world.SHORT:
        skip = pytest.mark.skip(reason="not in the short soak (FC_SOAK_SHORT=1)")
        for item in mine:
            if "soak_short" not in item.keywords:
                item.add_marker(skip)
        return
    else:
        return
    for item in mine:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def soak_remote_template(demo_remote_template, tmp_path_factory) -> Path:
    """The demo remote with twelve clean branches of its own (feature/clean-merge-NN)."""
    return world.make_soak_remote(
        demo_remote_template, tmp_path_factory.mktemp("soak") / "template.git", 12
    )


@pytest.fixture
def soak_settings(settings):
    """The workers' knobs, in this process too, so its safety net agrees with them."""
    settings.FC_STALL_AFTER = timedelta(seconds=world.STALL_AFTER)
    settings.FC_ROLLOUT_STALL_AFTER = timedelta(seconds=world.STALL_AFTER)
    settings.FC_ROLLOUT_LEASE = timedelta(seconds=world.ROLLOUT_LEASE)
    settings.FC_ROLLOUT_POLL_SECONDS = world.ROLLOUT_POLL
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    return settings


@pytest.fixture
def aws():
    with simulated_aws() as state:
        yield state


@pytest.fixture
def jenkins():
    server = SlowJenkins(jobs=())
    server.queue_delay = 0
    server.build_seconds = 0.3
    server.executors = 8
    with server:
        yield server


@pytest.fixture
def worker(transactional_db, soak_settings, aws, jenkins, tmp_path):
    """The machines: start them with worker.start_ready(names...); all killed after the test.

    Named `worker` so the root conftest leaves dispatch.send_task alone: steps go to Redis.
    """
    env = worker_env(
        database_name=django_settings.DATABASES["default"]["NAME"],
        redis_url=django_settings.REDIS_URL,
        aws=aws,
        jenkins=jenkins,
    )
    purge_broker()
    machines = Machines(env, tmp_path / "machines")
    try:
        yield machines
    finally:
        machines.stop_all()
        purge_broker()
        for started in machines.started:  # shown by pytest when the test failed
            print(f"----- worker {started.name} (exit {started.process.returncode}) -----")
            print(started.log[-20000:])


@dataclass
class Soak:
    """One soak test's world: its machines, AWS, Jenkins, the API and beat's loop."""

    machines: Machines
    aws: world.SoakAws
    jenkins: SlowJenkins
    api: APIClient
    tmp: Path
    template: Path
    beat: Beat = field(default_factory=Beat)
    apps: dict[str, tuple[Application, Path, str]] = field(default_factory=dict)

    def application(
        self,
        slug: str,
        *,
        backend: str = "local",
        ecs: bool = False,
        sleep: float = 0,
        **fields,
    ) -> Application:
        """An application with its own copy of the soak remote; on ECS if `ecs`."""
        remote = self.tmp / "remotes" / f"{slug}.git"
        remote.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.template, remote)
        app = Application.objects.create(
            slug=slug,
            name=slug,
            git_remote_url=str(remote),
            default_branch="main",
            build_command=world.build_command(publish=ecs, sleep=sleep),
            build_backend=backend,
            build_timeout_seconds=120,
            build_hold_minutes=0,  # a failed build gives the slot up at the next safety net
            image_repository=f"{world.REGISTRY}/{slug}" if ecs else "",
            soak_seconds=1,
            phase_timeout_seconds=120,
            **fields,
        )
        if backend == "jenkins":
            self.jenkins.add_job(app.jenkins_job_name)
        if ecs:
            world.add_ecs_services(self.aws, app)
        self.apps[slug] = (app, remote, world.git(remote, "rev-parse", "refs/heads/main"))
        return app


@pytest.fixture
def soak(worker, aws, jenkins, soak_remote_template, tmp_path):
    user = maintainer("soaker")
    api = APIClient()
    api.force_authenticate(user)
    return Soak(worker, aws, jenkins, api, tmp_path, soak_remote_template)
