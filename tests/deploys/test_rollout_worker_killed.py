"""A worker process killed in the middle of a rollout: another one finishes it or rolls it back.

Everything here is real but AWS: Celery workers are separate processes on Redis, sharing
the test database (transactional_db), and they talk to ECS and ECR through boto3 over HTTP
to moto's server, which runs in this process with the ECS deployment simulator and its
clock. Worker A is SIGKILLed (its whole process group, no warm shutdown), so the tick it
was running or holding for later is lost with it; worker B is started, and the safety net
(deploys.resume, called here as beat would call it) finds the quiet deploy and sends its
tick again. Nothing is stuck, and nothing is done twice: every UpdateService ECS received
is recorded by a spy in the server, so "each service updated once" is counted at ECS.

* The rollout: worker A is killed at the worst moment of a tick, holding the lease,
  after ECS applied its UpdateService and before it could record the deployment (the
  server holds its answer). Worker B waits the lease out, adopts that deployment instead
  of starting another, and takes the rollout to the end: succeeded and merged.
* The rollback: the new tasks fail, the deploy rolls back, and worker A is killed between
  two ticks while the rollback of the second phase is under way. Worker B watches that
  rollback deployment to its end and rolls the first phase back: every service is on
  exactly the revision it ran before.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from django.conf import settings
from django.utils import timezone
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.server import ThreadedMotoServer

from builds.models import Build, BuildStatus
from clusters.models import Cluster, Placement, ProcessType, Service
from deploys.models import Application, Deploy, RolloutStatus
from deploys.repositories import repository_for
from deploys.resume import resume_deploys
from deploys.rollout.forward import start_rollout
from deploys.states import FINAL_STATES, State
from devtools.ecs_simulator import EcsSimulator, create_service
from fatcontroller.celery import app as celery_app
from tests.remotes import remote_main
from tests.waiting import wait_until

pytestmark = pytest.mark.skipif(
    not settings.REDIS_URL or "postgresql" not in settings.DATABASES["default"]["ENGINE"],
    reason="needs Redis and PostgreSQL (make test sets REDIS_URL and DATABASE_URL): "
    "the workers are other processes",
)

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPOSITORY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/demo-shop"
# name: (process type, phase)
SERVICES = {"shop-worker": (ProcessType.WORKER, 1), "shop-web": (ProcessType.WEB, 2)}
STALL_AFTER = 3  # FC_ROLLOUT_STALL_AFTER, in seconds, for the workers and the safety net
LEASE = 5  # FC_ROLLOUT_LEASE: how long a killed worker's tick keeps the others out
R = RolloutStatus
# Ceilings, not expectations: a Celery worker booting, and a whole rollout, on a 2-core machine
# that other test runs keep busy. A passing run takes a fraction of them.
WORKER_START = 90.0
ROLLOUT_TIMEOUT = 180.0


def timeline(deploy_id: int) -> str:
    deploy = Deploy.objects.get(pk=deploy_id)
    lines = [f"deploy #{deploy_id} is {deploy.state}, lease until {deploy.step_lease_until}"]
    lines += [
        f"  {e.created_at:%H:%M:%S.%f} {e.from_state} -> {e.to_state}: {e.message}"
        for e in deploy.events.order_by("id")
    ]
    lines += [
        f"  rollout {r.placement.ecs_service_name}: {r.status} new={r.revision_made} "
        f"deployment={r.start_handle} back={r.restore_handle} {r.message}"
        for r in deploy.rollouts.select_related("placement")
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- AWS


@dataclass
class UpdateCall:
    """One UpdateService that ECS carried out, whoever sent it."""

    service: str
    revision: str  # "shop-web:2"
    deployment_id: str  # the PRIMARY deployment in ECS's answer


@dataclass
class Aws:
    url: str
    simulator: EcsSimulator
    updates: list[UpdateCall] = field(default_factory=list)
    # Set hold to (service, revision) to keep ECS's answer to the next UpdateService to it from
    # its caller (after ECS applied it) until `release` is set; `held` says it is held.
    hold: tuple[str, str] | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def client(self, name: str):
        return boto3.client(
            name,
            region_name=REGION,
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="aws-secret-key-for-tests",
        )

    def describe(self, service: str) -> dict:
        answer = self.client("ecs").describe_services(cluster="demo", services=[service])
        return answer["services"][0]


@pytest.fixture
def aws():
    """moto's server on a free port, with the ECS simulator installed and its clock running."""
    quiet = logging.getLogger("werkzeug")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # not one line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    simulator = EcsSimulator(task_start_seconds=0.5, task_fail_after_seconds=0.5)
    simulator.install()
    simulator.start_clock(interval=0.05)
    state = Aws(url=f"http://{host}:{port}", simulator=simulator)
    locked_call_action = EC2ContainerServiceResponse.__dict__["call_action"]

    def spying_call_action(response):
        result = locked_call_action(response)
        if response._get_action() != "UpdateService":
            return result
        status, _headers, body = result
        if int(status) != 200:
            return result
        service = json.loads(body)["service"]
        primary = next(d for d in service["deployments"] if d["status"] == "PRIMARY")
        call = UpdateCall(
            service=service["serviceName"],
            revision=service["taskDefinition"].rsplit("/", 1)[-1],
            deployment_id=primary["id"],
        )
        state.updates.append(call)
        if state.hold == (call.service, call.revision) and not state.held.is_set():
            state.held.set()  # outside the simulator's lock: ECS goes on meanwhile
            state.release.wait(timeout=60)
        return result

    EC2ContainerServiceResponse.call_action = spying_call_action
    try:
        yield state
    finally:
        state.release.set()
        EC2ContainerServiceResponse.call_action = locked_call_action
        simulator.uninstall()
        reset = urllib.request.Request(f"{state.url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - our own server
        server.stop()
        quiet.setLevel(level)


def set_up_ecs(aws: Aws) -> None:
    """A cluster with two services on revision 1 of their families, running, and the ECR repo."""
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="demo")
    for name in SERVICES:
        create_service(ecs, cluster="demo", name=name, image=f"{REPOSITORY}:base")
    aws.client("ecr").create_repository(repositoryName="demo-shop")

    def steady():
        described = ecs.describe_services(cluster="demo", services=list(SERVICES))["services"]
        return all(
            len(s["deployments"]) == 1
            and s["deployments"][0]["rolloutState"] == "COMPLETED"
            and s["runningCount"] == 2
            for s in described
        )

    wait_until(steady, 10, "the services to start on revision 1")


def push_image(aws: Aws, tag: str) -> None:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [],
        }
    )
    aws.client("ecr").put_image(repositoryName="demo-shop", imageManifest=manifest, imageTag=tag)


# --------------------------------------------------------------------------- workers


@dataclass
class WorkerProcess:
    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the worker's whole process group: no warm shutdown, nothing given back."""
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=10)


class Workers:
    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.started: list[WorkerProcess] = []

    def start(self, name: str) -> WorkerProcess:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "fatcontroller",
                    "worker",
                    "--pool=solo",
                    "--concurrency=1",
                    "-Q",
                    "deploys,builds,clusters",
                    "--without-mingle",
                    "--without-gossip",
                    "--without-heartbeat",
                    "--loglevel=INFO",
                    "-n",
                    f"{name}@%h",
                ],
                cwd=settings.BASE_DIR,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        worker = WorkerProcess(name, process, log_path)
        self.started.append(worker)
        return worker


def purge_broker() -> None:
    """Empty the queues, and forget what dead workers held (Redis would give it back in 1 h)."""
    with celery_app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in settings.CELERY_TASK_QUEUES:
            queue.bind(channel).purge()
        channel.client.delete(
            channel.unacked_key, channel.unacked_index_key, channel.unacked_mutex_key
        )


def queued_messages() -> int:
    """Messages waiting in the queues, not yet taken by any worker (no priorities here)."""
    with celery_app.connection_for_write() as connection:
        client = connection.default_channel.client
        return sum(client.llen(queue.name) for queue in settings.CELERY_TASK_QUEUES)


@contextmanager
def running_workers(settings, tmp_path, extra_env: dict[str, str]) -> Iterator[Workers]:
    """Workers on Redis against the test database, with the rollout's quick clocks; all of
    them killed when the block ends, and their logs printed (pytest shows them on failure)."""
    settings.FC_ROLLOUT_STALL_AFTER = timedelta(seconds=STALL_AFTER)
    settings.FC_ROLLOUT_LEASE = timedelta(seconds=LEASE)
    database = urlsplit(os.environ["DATABASE_URL"])
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key != "DATABASE_URL"
    }
    env.update(
        {
            "DATABASE_URL": database._replace(
                path="/" + settings.DATABASES["default"]["NAME"]
            ).geturl(),
            "REDIS_URL": settings.REDIS_URL,
            "SECRET_KEY": settings.SECRET_KEY,
            "FC_ROLLOUT_STALL_AFTER": str(STALL_AFTER),
            "FC_ROLLOUT_POLL_SECONDS": "0.5",
            "FC_ROLLOUT_LEASE": str(LEASE),
            "FC_WORK_DIR": str(tmp_path / "worker-work"),
            "DB_CONN_MAX_AGE": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
    )
    purge_broker()
    workers = Workers(env, tmp_path)
    try:
        yield workers
    finally:
        for started in workers.started:
            started.kill()
        purge_broker()
        for started in workers.started:  # shown by pytest when the test failed
            print(f"----- worker {started.name} (exit {started.process.returncode}) -----")
            print(started.log)


@pytest.fixture
def worker(transactional_db, aws, settings, tmp_path):
    """Starts Celery worker processes on Redis against the test database, talking to moto's
    server; kills them all after.

    Named `worker` so the `sent_tasks` fixture leaves dispatch.send_task alone: the steps'
    tasks go to Redis for real.
    """
    aws_env = {
        "AWS_ENDPOINT_URL": aws.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "aws-secret-key-for-tests",
        "AWS_DEFAULT_REGION": REGION,
    }
    with running_workers(settings, tmp_path, aws_env) as workers:
        yield workers


# -------------------------------------------------------------------------- the deploy


def ready_to_roll_out(application: Application, user, aws: Aws) -> tuple[Deploy, Build]:
    """A deploy in building whose build passed: a real candidate on the remote, its image in ECR.

    Made directly rather than through merging and building, which other tests cover.
    """
    set_up_ecs(aws)
    Application.objects.filter(pk=application.pk).update(
        image_repository=REPOSITORY, soak_seconds=1, phase_timeout_seconds=600
    )
    application.refresh_from_db()
    cluster = Cluster.objects.create(name="demo", region=REGION)
    for name, (process_type, phase) in SERVICES.items():
        service = Service.objects.create(
            application=application, name=name, process_type=process_type, phase=phase
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
    return built_deploy(application, user, aws)


def built_deploy(
    application, user, aws: Aws, *, branch: str = "feature/clean-merge", image_tag: str = ""
) -> tuple[Deploy, Build]:
    """A deploy of `branch` in building whose build passed: its candidate made in the remote,
    its image (tagged `image_tag`, else the candidate's short sha) pushed to ECR."""
    deploy, build = candidate_deploy(application, user, branch=branch, image_tag=image_tag)
    push_image(aws, build.image_tag)
    return deploy, build


def candidate_deploy(
    application, user, *, branch: str = "feature/clean-merge", image_tag: str = ""
) -> tuple[Deploy, Build]:
    """A deploy of `branch` in building whose build passed: its candidate made in the remote,
    its build's image tagged `image_tag`, else the candidate's short sha (put where the
    target finds it by the caller)."""
    deploy = Deploy.objects.create(
        application=application,
        branch=branch,
        requester=user,
        state=State.BUILDING,
        started_at=timezone.now(),
    )
    head_sha, candidate_sha = repository_for(application).make_candidate(
        deploy.branch,
        deploy.candidate_ref,
        message=f"Merge {deploy.branch} into main (deploy #{deploy.pk})",
        when=deploy.created_at,
    )
    Deploy.objects.filter(pk=deploy.pk).update(head_sha=head_sha, candidate_sha=candidate_sha)
    build = Build.objects.create(
        deploy=deploy,
        attempt=1,
        status=BuildStatus.SUCCEEDED,
        image_tag=image_tag or candidate_sha[:12],
        finished_at=timezone.now(),
    )
    return Deploy.objects.select_related("application").get(pk=deploy.pk), build


def rollouts_of(deploy_id: int) -> dict:
    deploy = Deploy.objects.get(pk=deploy_id)
    return {r.placement.ecs_service_name: r for r in deploy.rollouts.select_related("placement")}


def safety_net_until_final(deploy_id: int, timeout: float) -> str:
    """Run the safety net every 0.2 s, as beat would (faster), until the deploy ends."""

    def final():
        state = Deploy.objects.get(pk=deploy_id).state
        if state in FINAL_STATES:
            return state
        resume_deploys()
        return None

    return wait_until(final, timeout, lambda: timeline(deploy_id), interval=0.2)


def resends(caplog, deploy_id: int, state: str) -> int:
    return sum(
        1
        for record in caplog.records
        if record.name == "deploys.resume"
        and record.getMessage() == f"deploy #{deploy_id} stalled in {state}: running its step again"
    )


def first_resend(caplog, deploy_id: int, state: str) -> float:
    """When the safety net first sent the deploy's step again (seconds since the epoch)."""
    return min(
        record.created
        for record in caplog.records
        if record.name == "deploys.resume"
        and record.getMessage() == f"deploy #{deploy_id} stalled in {state}: running its step again"
    )


def assert_nothing_left_behind(deploy_id: int) -> None:
    deploy = Deploy.objects.get(pk=deploy_id)
    assert deploy.step_lease_until is None, timeline(deploy_id)
    assert not deploy.rollouts.filter(status__in=[R.UPDATING, R.ROLLING_BACK, R.PENDING]).exists()


# ------------------------------------------------------------------------------ tests


def test_a_worker_killed_mid_update_is_replaced_and_the_rollout_finishes_once(
    worker, aws, application, user, demo_remote, caplog
):
    caplog.set_level(logging.WARNING, logger="deploys.resume")
    worker_a = worker.start("killed-a")  # it boots while the rest is set up
    deploy, build = ready_to_roll_out(application, user, aws)
    aws.hold = ("shop-worker", "shop-worker:2")  # phase 1
    start_rollout(deploy, build)  # building -> deploying; its first tick goes to Redis

    # Worker A registered shop-worker:2 and asked ECS to run it; ECS did, and its answer is
    # held: worker A is killed before it can write down the deployment.
    wait_until(aws.held.is_set, WORKER_START, lambda: f"worker A's UpdateService\n{worker_a.log}")
    worker_a.kill()
    aws.release.set()
    (held,) = aws.updates
    assert held.service == "shop-worker" and held.revision == "shop-worker:2"
    dying = rollouts_of(deploy.pk)["shop-worker"]
    assert dying.status == R.PENDING and dying.revision_made.endswith("shop-worker:2")
    assert dying.start_handle == ""  # ECS started it; Fat Controller never heard of it
    # Died at work: its tick took the lease and never gave it back. (Whether the lease still
    # stood when A died depends on how fast A got this far: on a busy machine a tick can
    # outlast its lease, so only its being held is asserted.)
    lease_of_a = Deploy.objects.get(pk=deploy.pk).step_lease_until
    assert lease_of_a is not None, timeline(deploy.pk)

    worker_b = worker.start("rescuer-b")
    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    # The outcome, whatever order worker B's ticks and the safety net's resends came in:
    # the deploy is final, the rollout finished once, and each service was updated once.
    assert state == State.SUCCEEDED, timeline(deploy.pk)
    moves = list(deploy.events.values_list("from_state", "to_state"))
    assert moves.count((State.DEPLOYING, State.VERIFYING)) == 1, timeline(deploy.pk)
    assert moves.count((State.MERGING_TO_DEFAULT, State.SUCCEEDED)) == 1, timeline(deploy.pk)
    deploy.refresh_from_db()
    assert remote_main(demo_remote) == deploy.candidate_sha  # merged, once the rollout was out
    assert resends(caplog, deploy.pk, State.DEPLOYING) >= 1  # the tick died with worker A
    # Nothing was sent again while worker A's lease stood (A might only have been slow).
    assert first_resend(caplog, deploy.pk, State.DEPLOYING) >= lease_of_a.timestamp()
    # Each service was updated once: worker B adopted the deployment worker A started.
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-web", "shop-web:2"),
    ]
    rollouts = rollouts_of(deploy.pk)
    assert rollouts["shop-worker"].start_handle == held.deployment_id
    assert rollouts["shop-web"].start_handle == aws.updates[1].deployment_id
    assert {r.status for r in rollouts.values()} == {R.DONE}
    image = f"{REPOSITORY}:{build.image_tag}"
    ecs = aws.client("ecs")
    for name in SERVICES:
        families = ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]
        assert [arn.rsplit("/", 1)[-1] for arn in families] == [f"{name}:1", f"{name}:2"]
        described = aws.describe(name)
        assert described["taskDefinition"].endswith(f"{name}:2")
        (deployment,) = described["deployments"]
        assert deployment["id"] == rollouts[name].start_handle
        assert (deployment["rolloutState"], deployment["runningCount"]) == ("COMPLETED", 2)
        revision = ecs.describe_task_definition(taskDefinition=f"{name}:2")["taskDefinition"]
        assert revision["containerDefinitions"][0]["image"] == image
    started = deploy.events.filter(message__startswith="shop-worker on demo: shop-worker:1 ->")
    assert started.count() == 1
    assert_nothing_left_behind(deploy.pk)
    assert worker_b.process.poll() is None  # alive and well


def test_a_worker_killed_during_the_rollback_is_replaced_and_the_rollback_finishes_once(
    worker, aws, application, user, demo_remote, caplog
):
    caplog.set_level(logging.WARNING, logger="deploys.resume")
    main_before = remote_main(demo_remote)
    worker_a = worker.start("killed-a")
    deploy, build = ready_to_roll_out(application, user, aws)
    aws.simulator.task_start_seconds = 1.0  # a rollback a worker can be caught in
    aws.simulator.fail_new_tasks("demo", "shop-web")  # phase 2's next deployment: OOM
    start_rollout(deploy, build)

    def rolling_back_phase_two() -> bool:
        if Deploy.objects.get(pk=deploy.pk).state != State.ROLLING_BACK:
            return False
        rollouts = rollouts_of(deploy.pk)
        return (rollouts["shop-web"].status, rollouts["shop-worker"].status) == (
            R.ROLLING_BACK,
            R.DONE,
        )

    def between_ticks() -> bool:
        """Freeze worker A; kill it if no tick is at work and its next tick is only in it."""
        if Deploy.objects.get(pk=deploy.pk).state == State.ROLLING_BACK:
            # ECS's clock stands still from here until A is dead, so the rollback of shop-web
            # cannot finish before a moment between two of A's ticks is caught, however
            # slowly this process gets to look on a busy machine.
            aws.simulator.stop_clock()
        if not rolling_back_phase_two():
            return False
        os.killpg(worker_a.process.pid, signal.SIGSTOP)
        lease = Deploy.objects.get(pk=deploy.pk).step_lease_until
        if rolling_back_phase_two() and lease is None and queued_messages() == 0:
            worker_a.kill()
            return True
        os.killpg(worker_a.process.pid, signal.SIGCONT)
        return False

    wait_until(
        between_ticks,
        WORKER_START,
        lambda: f"the rollback of shop-web\n{timeline(deploy.pk)}\n{worker_a.log}",
        interval=0.01,
    )
    aws.simulator.start_clock(interval=0.05)
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-web", "shop-web:2"),
        ("shop-web", "shop-web:1"),
    ]

    worker.start("rescuer-b")
    state = safety_net_until_final(deploy.pk, timeout=ROLLOUT_TIMEOUT)

    assert state == State.ROLLED_BACK, timeline(deploy.pk)
    assert remote_main(demo_remote) == main_before  # nothing merged
    assert resends(caplog, deploy.pk, State.ROLLING_BACK) >= 1  # the tick died with worker A
    rollouts = rollouts_of(deploy.pk)
    assert (
        "of shop-web:2 stopped: OutOfMemoryError"
        in deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK).message
    )
    # Forward once and back once each, highest phase first: worker B watched the rollback
    # worker A had started instead of starting another.
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-web", "shop-web:2"),
        ("shop-web", "shop-web:1"),
        ("shop-worker", "shop-worker:1"),
    ]
    back = {u.service: u.deployment_id for u in aws.updates if u.revision.endswith(":1")}
    assert {r.status for r in rollouts.values()} == {R.ROLLED_BACK}
    ecs = aws.client("ecs")
    for name in SERVICES:
        assert rollouts[name].revision_before.endswith(f"{name}:1")
        assert rollouts[name].restore_handle == back[name]
        described = aws.describe(name)
        assert described["taskDefinition"] == rollouts[name].revision_before
        (deployment,) = described["deployments"]
        assert deployment["id"] == back[name]
        assert (deployment["rolloutState"], deployment["runningCount"]) == ("COMPLETED", 2)
        families = ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]
        assert len(families) == 2  # one new revision each, not two
    for name in SERVICES:
        assert deploy.events.filter(message__startswith=f"{name} on demo: back to").count() == 1
    assert_nothing_left_behind(deploy.pk)
