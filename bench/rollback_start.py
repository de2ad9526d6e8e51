"""First failed task visible -> rollback started: how soon a rollout notices a failing revision.

moto's ThreadedMotoServer runs in this process with the ECS simulator installed and its clock
running (devtools/ecs_simulator.py); a real Celery worker process talks to it through
AWS_ENDPOINT_URL with dummy credentials and runs the rollout as in production, with the
default poll (FC_ROLLOUT_POLL_SECONDS=1, pinned for the worker). No beat runs, so only the
rollout's own ticks move the deploy.

The application has two ECS services, both in phase 1, of two tasks each. Every run pushes an
image tagged `doomed-NNN` to moto's ECR (so the image check passes) and makes a deploy of it
that has just built: the Deploy row is written in `building` with a succeeded Build, and
pipeline.build_finished moves it to `deploying` through the state machine, which sends the
first tick to the worker. The simulator fails every deployment whose image contains "doomed"
(behave_by_image "oom"): its tasks start, then stop with OutOfMemoryError. Rollbacks go to the
`base` revisions, which behave.

Start of the figure: the wall time the simulator's clock thread releases its lock after an
advance in which it stopped the first task of the deploy's revision. ECS calls run under the
same lock, so that is the first moment list_tasks/describe_tasks can show the stopped task.
The simulator is not edited: this module wraps the instance's `_fail` (to note the task) and
`advance` (to stamp the release). End: the wall time this process, reading the database every
5 ms, first sees the deploy in `rolling_back`. Each run then waits for `rolled_back` and
checks every service is back on its `base` revision before the next run.

Where in the rollout's tick period (1 s of countdown plus the tick itself) the failure lands
decides most of the figure, and with fixed timings it would land at the same point every run.
So each run gives doomed tasks another lifetime, evenly spread over 0.4-1.5 s (more than one
period): the failures fall evenly over the period, and the figure is the same from one `make
bench` to the next rather than the luck of a few random draws.

What the time is made of is kept beside the figure in results.json: from the failure to the
first describe_tasks answer that includes it (the wait for the next tick), from that answer
to the DeployEvent of the move (the rest of that tick), from the event to the state being
seen here (commit and this process's poll), and the rollout's tick period.
"""

import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.simulated_aws import (
    MANIFEST,
    REGION,
    deploy_state,
    is_final,
    repository,
    simulated_aws,
    wait_for,
    worker_on,
)

RUNS = 10
REPOSITORY_NAME = "bench-shop"
REPOSITORY = repository(REPOSITORY_NAME)
CLUSTER = "bench"
SERVICES = ("bench-web", "bench-worker")  # both in phase 1
TASKS_PER_SERVICE = 2
MARKER = "doomed"
TASK_START_SECONDS = 0.2
# A doomed task runs this long: evenly spread over more than a tick period, one value a run.
TASK_LIFETIME_SECONDS = (0.4, 1.5)
CLOCK_INTERVAL = 0.02
LOG = "worker-rollback-start.log"
POLL_SECONDS = 0.005  # how often the database is read while timing


class FailureWatch:
    """When the simulator stops a failing task, and when the worker first reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.armed = False
        self._just_failed: list[tuple[str, str]] = []  # (task arn, deployment id), this advance
        self.visible_at: float | None = None  # the first failure, as soon as callers can see it
        self.first_task: str = ""
        self.first_deployment: str = ""
        self.failed_arns: set[str] = set()
        self.seen_by_worker_at: float | None = None  # the first describe_tasks answer with it
        self.watch_calls: list[float] = []  # when each DescribeServices came (every tick asks)

    def arm(self) -> None:
        with self._lock:
            self.armed = True
            self._just_failed.clear()
            self.visible_at = self.seen_by_worker_at = None
            self.first_task = self.first_deployment = ""
            self.failed_arns = set()
            self.watch_calls = []

    def disarm(self) -> None:
        with self._lock:
            self.armed = False

    def install(self, sim, backend_class) -> Callable[[], None]:
        """Wrap the simulator's `_fail` and `advance` and moto's task and service reads;
        returns undo."""
        original_fail, original_advance = sim._fail, sim.advance
        original_describe = backend_class.__dict__["describe_tasks"]
        original_services = backend_class.__dict__["describe_services"]
        watch = self

        def fail(service, state, deployment, sim_task, t):
            original_fail(service, state, deployment, sim_task, t)
            watch._just_failed.append((sim_task.task.task_arn, deployment.id))

        def advance(seconds):
            try:
                original_advance(seconds)
            finally:
                # The simulator's lock is released: what it stopped is what ECS now answers.
                released = time.time()
                failed, watch._just_failed = watch._just_failed, []
                with watch._lock:
                    if watch.armed and failed:
                        watch.failed_arns.update(arn for arn, _ in failed)
                        if watch.visible_at is None:
                            watch.visible_at = released
                            watch.first_task, watch.first_deployment = failed[0]

        def describe_tasks(backend, *args, **kwargs):
            answer = original_describe(backend, *args, **kwargs)
            with watch._lock:
                if watch.seen_by_worker_at is None and any(
                    t.task_arn in watch.failed_arns for t in answer
                ):
                    watch.seen_by_worker_at = time.time()
            return answer

        def describe_services(backend, *args, **kwargs):
            if watch.armed:
                watch.watch_calls.append(time.time())
            return original_services(backend, *args, **kwargs)

        sim._fail, sim.advance = fail, advance
        backend_class.describe_tasks = describe_tasks
        backend_class.describe_services = describe_services

        def undo() -> None:
            backend_class.describe_tasks = original_describe
            backend_class.describe_services = original_services
            del sim._fail, sim.advance

        return undo


def run(var_dir: Path) -> dict[str, dict]:
    from moto.ecs.models import EC2ContainerServiceBackend

    from bench.__main__ import bench_user, summary
    from clusters.models import Cluster, Placement, ProcessType, Service
    from deploys.models import Application

    work = var_dir / "rollback-start"
    work.mkdir(parents=True, exist_ok=True)
    samples: dict[str, list[float]] = {
        "total": [],
        "wait": [],
        "tick": [],
        "commit": [],
        "period": [],
    }
    with simulated_aws(task_start_seconds=TASK_START_SECONDS) as aws:
        watch = FailureWatch()
        undo = watch.install(aws.sim, EC2ContainerServiceBackend)
        aws.sim.start_clock(interval=CLOCK_INTERVAL)
        aws.sim.behave_by_image(MARKER, "oom")
        try:
            base = _make_services(aws.ecs, aws.ecr)
            app = Application.objects.create(
                slug="bench-ecs",
                name="Bench on ECS",
                git_remote_url=str(work / "unused.git"),  # the deploys never merge
                image_repository=REPOSITORY,
                soak_seconds=0,
                phase_timeout_seconds=60,
            )
            cluster = Cluster.objects.create(name=CLUSTER, region=REGION)
            for name in SERVICES:
                service = Service.objects.create(
                    application=app, name=name, process_type=ProcessType.WEB, phase=1
                )
                Placement.objects.create(
                    service=service, cluster=cluster, ecs_service_name=name, container_name="app"
                )
            user = bench_user()
            log = var_dir / LOG
            with worker_on(aws.url, log, FC_ROLLOUT_POLL_SECONDS="1"):
                for n in range(RUNS):
                    aws.sim.task_fail_after_seconds = _lifetime(n)
                    one = _one_run(n, app, user, aws.ecs, aws.ecr, base, watch)
                    for key, value in one.items():
                        samples[key].extend(value if isinstance(value, list) else [value])
        finally:
            aws.sim.stop_clock()
            undo()

    figure = summary(samples["total"])
    figure["breakdown"] = {
        "failure visible -> first describe_tasks showing it": summary(samples["wait"]),
        "that answer -> rolling_back event": summary(samples["tick"]),
        "event -> state seen in the database": summary(samples["commit"]),
        "rollout tick period": summary(samples["period"]),
    }
    return {"first failed task visible -> rollback started": figure}


def _lifetime(n: int) -> float:
    low, high = TASK_LIFETIME_SECONDS
    return low + (high - low) * (n + 0.5) / RUNS


def _make_services(ecs, ecr) -> dict[str, str]:
    """The cluster and its services on `base`, steady; returns each service's revision."""
    from devtools.ecs_simulator import create_service

    ecs.create_cluster(clusterName=CLUSTER)
    ecr.create_repository(repositoryName=REPOSITORY_NAME)
    base = {}
    for name in SERVICES:
        base[name] = create_service(
            ecs,
            cluster=CLUSTER,
            name=name,
            image=f"{REPOSITORY}:base",
            desired_count=TASKS_PER_SERVICE,
        )
    wait_for(lambda: _steady_on(ecs, base), "the services to start", timeout=30, log=LOG)
    return base


def _one_run(n, app, user, ecs, ecr, base, watch: FailureWatch) -> dict:
    from builds.models import Build, BuildStatus
    from deploys import pipeline
    from deploys.models import Deploy
    from deploys.states import State

    tag = f"{MARKER}-{n:03d}"
    ecr.put_image(repositoryName=REPOSITORY_NAME, imageManifest=MANIFEST, imageTag=tag)
    deploy = Deploy.objects.create(
        application=app,
        branch=f"bench/rollback-{n:03d}",
        requester=user,
        state=State.BUILDING,
        candidate_sha=f"{n:040x}",
        head_sha=f"{n:040x}",
    )
    build = Build.objects.create(
        deploy=deploy, attempt=1, status=BuildStatus.SUCCEEDED, image_tag=tag
    )
    watch.arm()
    pipeline.build_finished(deploy, build, passed=True, summary="bench")  # -> deploying

    started = time.monotonic()
    while (state := deploy_state(deploy)) != State.ROLLING_BACK:
        if state != State.DEPLOYING:
            raise SystemExit(f"bench: deploy #{deploy.pk} went {state}; see the worker log")
        if time.monotonic() - started > 30:
            raise SystemExit(
                f"bench: deploy #{deploy.pk} not rolling back 30 s after it started deploying; "
                f"see {LOG}"
            )
        time.sleep(POLL_SECONDS)
    seen = time.time()
    watch.disarm()
    if watch.visible_at is None:
        raise SystemExit(f"bench: deploy #{deploy.pk} rolled back before any task failed")
    ours = set(deploy.rollouts.values_list("start_handle", flat=True))
    if watch.first_deployment not in ours:
        raise SystemExit(
            f"bench: the first failed task {watch.first_task} is of {watch.first_deployment}, "
            f"not of deploy #{deploy.pk}'s deployments {sorted(ours)}"
        )
    moved = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK)
    event_at = moved.created_at.timestamp()
    looked = watch.seen_by_worker_at or event_at
    # Ticks of the forward rollout: each begins with a DescribeServices after a pause.
    starts = []
    for at in sorted(watch.watch_calls):
        if not starts or at - starts[-1] > 0.3:
            starts.append(at)

    wait_for(lambda: is_final(deploy), f"deploy #{deploy.pk} to finish", timeout=60, log=LOG)
    if deploy_state(deploy) != State.ROLLED_BACK:
        ended = deploy_state(deploy)
        raise SystemExit(f"bench: deploy #{deploy.pk} ended {ended}, not rolled back")
    if not _steady_on(ecs, base):
        raise SystemExit(f"bench: after deploy #{deploy.pk} the services are not back on base")
    return {
        "total": (seen - watch.visible_at) * 1000,
        "wait": (looked - watch.visible_at) * 1000,
        "tick": (event_at - looked) * 1000,
        "commit": (seen - event_at) * 1000,
        "period": [(b - a) * 1000 for a, b in zip(starts, starts[1:], strict=False)],
    }


def _steady_on(ecs, revisions: dict[str, str]) -> bool:
    described = ecs.describe_services(cluster=CLUSTER, services=list(revisions))["services"]
    return all(
        s["taskDefinition"] == revisions[s["serviceName"]]
        and len(s["deployments"]) == 1
        and s["deployments"][0]["rolloutState"] == "COMPLETED"
        and s["runningCount"] == s["desiredCount"]
        for s in described
    ) and len(described) == len(revisions)
