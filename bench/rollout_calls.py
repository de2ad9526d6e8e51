"""ECS calls a rollout makes per watched service per tick, and its wall time against ECS's own.

moto's ThreadedMotoServer runs in this process with the ECS simulator installed and its clock
running in real time (devtools/ecs_simulator.py: each task of a new deployment starts
TASK_START_SECONDS after the one before, TASKS_PER_SERVICE tasks a service, nothing fails);
a real Celery worker process runs the rollout through AWS_ENDPOINT_URL with dummy credentials,
as in production, with FC_ROLLOUT_POLL_SECONDS=1 and FC_ECS_STOPPED_TASKS_EVERY=10 (the
defaults, pinned for the worker). No beat runs, so only the rollout's own ticks move the deploy.

It runs once with 4 and once with 40 ECS services: one application per size, every service
in phase 1 (all in one phase), each placed on the size's own cluster, SOAK_SECONDS of soak.

Counting: every ECS request the server answers goes through moto's
EC2ContainerServiceResponse.call_action (the simulator's locked one); this module wraps it to
note the time, the action and, for DescribeServices, the services asked about. Retries are
requests too, so they count. The window is from the deploy's move to `deploying` to its
`succeeded`; this process makes no ECS call in it (it reads the database every 50 ms), so
every call counted is the worker's. The image check asks ECR, not ECS: it is not counted.

Ticks: a tick's calls come within milliseconds of each other and ticks are at least the 1 s
poll apart, so a gap of more than TICK_GAP_SECONDS starts a new tick. The tick that brings
the last service out moves the deploy to `verifying`, whose first tick is sent at once,
without the poll's wait: calls before that DeployEvent's time are the one tick's, calls
after it the other's. A tick that registers a revision or updates a service is a starting
tick; every other is a watching tick, and the services it watched are the distinct services
its DescribeServices calls named (in `deploying` those not yet out, in `verifying` all).

Figures, for each size: per watching tick, its calls divided by the services it watched, by
action (DescribeServices, ListTasks, DescribeTasks, others) and in all, median and max over
the watching ticks; the calls of the ticks that watched every service; and the whole
rollout: every call of the window divided by services and by the window's ticks (the
starting tick included). Each tick's calls are kept in results.json. The issue's goal, at
most 0.15 calls per watched service per tick at 40 services (6 calls for a tick watching
40), is reported beside the figures with the ticks above it, never asserted. Before the
batching every watched service cost one DescribeServices and one ListTasks per tick (2.0):
that code is only in the history, so that figure is not measured here.

Wall time, real seconds with the simulator's clock running in real time: the rollout is
from the DeployEvent into `deploying` to the one into `verifying`, through Fat Controller's
ticks (image check, revisions registered, services updated, then watched until every
deployment is out). The floor is the same services driven directly from this process just
before, with no Fat Controller: a new revision registered for each (not timed), then from
the first UpdateService (one after the other) to DescribeServices (10 a call, every 50 ms)
showing every service's new deployment COMPLETED with all its tasks running and alone.
"""

import statistics
import threading
import time
from pathlib import Path

from bench.simulated_aws import (
    MANIFEST,
    REGION,
    all_completed,
    deploy_state,
    is_final,
    repository,
    simulated_aws,
    start_built_deploy,
    start_services,
    wait_for,
    worker_on,
)

SIZES = (4, 40)
REPOSITORY_NAME = "bench-calls"
REPOSITORY = repository(REPOSITORY_NAME)
TASKS_PER_SERVICE = 2
TASK_START_SECONDS = 2.0
SOAK_SECONDS = 15
POLL_SECONDS = "1"
STOPPED_TASKS_EVERY = "10"
CLOCK_INTERVAL = 0.02
TICK_GAP_SECONDS = 0.5
GOAL = 0.15  # calls per watched service per tick at 40 services, as the issue states
ACTIONS = ("DescribeServices", "ListTasks", "DescribeTasks")
STARTING = {"RegisterTaskDefinition", "UpdateService", "DescribeTaskDefinition"}
LOG = "worker-rollout-calls.log"


class CallLog:
    """Every ECS request moto's server answers: (time, action, services asked about)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[float, str, tuple[str, ...]]] = []

    def install(self, response_class):
        """Wrap call_action (the simulator's, so install after it); returns undo."""
        original = response_class.__dict__["call_action"]
        log = self

        def call_action(response):
            action = response._get_action()
            services = ()
            if action == "DescribeServices":
                services = tuple(response._get_param("services") or ())
            with log._lock:
                log.calls.append((time.time(), action, services))
            return original(response)

        response_class.call_action = call_action

        def undo() -> None:
            response_class.call_action = original

        return undo

    def take(self) -> list[tuple[float, str, tuple[str, ...]]]:
        with self._lock:
            calls, self.calls = self.calls, []
        return calls


def run(var_dir: Path) -> dict[str, dict]:
    from moto.ecs.responses import EC2ContainerServiceResponse

    work = var_dir / "rollout-calls"
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, dict] = {}
    with simulated_aws(task_start_seconds=TASK_START_SECONDS) as aws:
        calls = CallLog()
        undo = calls.install(EC2ContainerServiceResponse)
        aws.sim.start_clock(interval=CLOCK_INTERVAL)
        try:
            aws.ecr.create_repository(repositoryName=REPOSITORY_NAME)
            settings = {
                "FC_ROLLOUT_POLL_SECONDS": POLL_SECONDS,
                "FC_ECS_STOPPED_TASKS_EVERY": STOPPED_TASKS_EVERY,
            }
            with worker_on(aws.url, var_dir / LOG, **settings):
                for size in SIZES:
                    figures.update(_one_size(size, work, aws.ecs, aws.ecr, calls))
        finally:
            aws.sim.stop_clock()
            undo()
    return figures


def _one_size(size: int, work: Path, ecs, ecr, calls: CallLog) -> dict[str, dict]:
    from deploys.states import State

    cluster = f"calls-{size}"
    names = [f"calls-{size}-{n:02d}" for n in range(size)]
    app, user = _make_application(size, work, ecs, cluster, names)
    floor_ms = _floor(ecs, cluster, names)

    tag = f"calls-{size}"
    ecr.put_image(repositoryName=REPOSITORY_NAME, imageManifest=MANIFEST, imageTag=tag)
    calls.take()  # the floor's, and anything before (making the deploy calls no ECS)
    deploy = start_built_deploy(app, user, tag)
    wait_for(
        lambda: is_final(deploy),
        f"deploy #{deploy.pk} with {size} services to finish",
        timeout=300,
        log=LOG,
    )
    window = calls.take()
    if deploy_state(deploy) != State.SUCCEEDED:
        raise SystemExit(
            f"bench: deploy #{deploy.pk} with {size} services ended {deploy_state(deploy)}; "
            f"see {LOG}"
        )

    deploying = deploy.events.get(
        from_state=State.BUILDING, to_state=State.DEPLOYING
    ).created_at.timestamp()
    verifying = deploy.events.get(
        from_state=State.DEPLOYING, to_state=State.VERIFYING
    ).created_at.timestamp()
    ticks = _ticks(window, verifying)
    watching = [t for t in ticks if not any(action in STARTING for _, action, _ in t)]
    ratios: dict[str, list[float]] = {action: [] for action in (*ACTIONS, "others", "all")}
    watched_counts = []
    detail = []
    for tick in ticks:
        counted: dict[str, int] = {}
        for _, action, _ in tick:
            counted[action] = counted.get(action, 0) + 1
        watched = {s for _, action, services in tick for s in services}
        detail.append(
            {
                "at_s": round(tick[0][0] - deploying, 2),
                "took_s": round(tick[-1][0] - tick[0][0], 2),
                "state": State.DEPLOYING if tick[0][0] < verifying else State.VERIFYING,
                "watching": tick in watching,
                "services_named": len(watched),
                "calls": dict(sorted(counted.items())),
            }
        )
    for tick in watching:
        watched = {s for _, action, services in tick for s in services}
        if not watched:
            continue  # one that asked ECS nothing about services
        watched_counts.append(len(watched))
        for action in ACTIONS:
            n = sum(1 for _, a, _ in tick if a == action)
            ratios[action].append(n / len(watched))
        ratios["others"].append(sum(1 for _, a, _ in tick if a not in ACTIONS) / len(watched))
        ratios["all"].append(len(tick) / len(watched))

    by_action: dict[str, int] = {}
    for _, action, _ in window:
        by_action[action] = by_action.get(action, 0) + 1
    conditions = (
        f"moto's ThreadedMotoServer + ECS simulator, real worker, {size} ECS services in one "
        f"phase on one cluster, {TASKS_PER_SERVICE} tasks each starting {TASK_START_SECONDS} s "
        f"apart, FC_ROLLOUT_POLL_SECONDS={POLL_SECONDS}, "
        f"FC_ECS_STOPPED_TASKS_EVERY={STOPPED_TASKS_EVERY}, soak {SOAK_SECONDS} s"
    )
    per_tick = _ratio_summary(ratios["all"])
    per_tick["unit"] = "calls/service/tick"
    per_tick["by_action"] = {action: _ratio_summary(ratios[action]) for action in ratios}
    per_tick["services_watched_per_tick"] = watched_counts
    per_tick["conditions"] = conditions
    whole = [t for t in detail if t["watching"] and t["services_named"] == size]
    per_tick["ticks_watching_all"] = {
        "ticks": len(whole),
        "calls_median": statistics.median(sum(t["calls"].values()) for t in whole) if whole else "",
        "calls_max": max((sum(t["calls"].values()) for t in whole), default=""),
    }
    if size == 40:
        over = [
            t
            for t in detail
            if t["watching"] and sum(t["calls"].values()) > GOAL * max(1, t["services_named"])
        ]
        per_tick["goal"] = (
            f"at most {GOAL} calls per watched service per tick at 40 services (a tick "
            f"watching 40 makes at most 6 calls); watching ticks above {GOAL}: {len(over)} of "
            f"{len(watched_counts)}"
        )
        per_tick["ticks_above_goal"] = over
    per_tick["before_the_batching"] = "2.0 (one DescribeServices and one ListTasks a service a "
    per_tick["before_the_batching"] += "tick; from the change's description, not measured here)"

    total = {
        "count": len(window),
        "median": round(len(window) / size / len(ticks), 3),
        "p95": "",
        "max": "",
        "unit": "calls/service/tick",
        "per_service_per_tick": round(len(window) / size / len(ticks), 3),
        "calls": len(window),
        "calls_by_action": dict(sorted(by_action.items())),
        "services": size,
        "ticks": len(ticks),
        "watching_ticks": len(watched_counts),
        "each_tick": detail,
        "conditions": conditions + "; from deploying to succeeded, every tick",
    }
    rollout_ms = (verifying - deploying) * 1000
    wall = {
        "count": 1,
        "median_ms": round(rollout_ms, 1),
        "p95_ms": round(rollout_ms, 1),
        "max_ms": round(rollout_ms, 1),
        "floor_ms": round(floor_ms, 1),
        "over_floor_ms": round(rollout_ms - floor_ms, 1),
        "conditions": conditions + "; real time, deploying -> verifying event; floor: the same "
        "services updated directly from the bench process until all COMPLETED",
    }
    floor = {"count": 1, "median_ms": round(floor_ms, 1), "p95_ms": "", "max_ms": ""}
    return {
        f"ECS calls/watched service/tick, {size} svc": per_tick,
        f"ECS calls/service/tick whole rollout, {size} svc": total,
        f"rollout deploying -> verifying, {size} svc": wall,
        f"simulator floor, all COMPLETED, {size} svc": floor,
    }


def _ratio_summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0, "median": "", "p95": "", "max": ""}
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "median": round(statistics.median(ordered), 3),
        "p95": round(ordered[max(0, round(0.95 * len(ordered)) - 1)], 3),
        "max": round(ordered[-1], 3),
    }


def _ticks(window, boundary: float):
    """The calls, grouped into ticks by the gaps between them and split at `boundary`."""
    ticks: list[list] = []
    last = None
    for call in sorted(window):
        crossed = last is not None and last < boundary <= call[0]
        if last is None or call[0] - last > TICK_GAP_SECONDS or crossed:
            ticks.append([])
        ticks[-1].append(call)
        last = call[0]
    return ticks


def _make_application(size, work, ecs, cluster, names):
    from bench.__main__ import bench_user
    from bench.slot_handoff import make_remote
    from clusters.models import Cluster, Placement, ProcessType, Service
    from deploys.models import Application

    start_services(ecs, cluster, names, f"{REPOSITORY}:base", TASKS_PER_SERVICE, LOG)
    remote = make_remote(work / f"remote-{size}" / "remote.git", 1)
    app = Application.objects.create(
        slug=f"bench-calls-{size}",
        name=f"Bench calls, {size} services",
        git_remote_url=str(remote),
        image_repository=REPOSITORY,
        soak_seconds=SOAK_SECONDS,
        phase_timeout_seconds=300,
    )
    db_cluster = Cluster.objects.create(name=cluster, region=REGION)
    for name in names:
        service = Service.objects.create(
            application=app, name=name, process_type=ProcessType.WEB, phase=1
        )
        Placement.objects.create(
            service=service, cluster=db_cluster, ecs_service_name=name, container_name="app"
        )
    user = bench_user()
    return app, user


def _floor(ecs, cluster, names) -> float:
    """From the first UpdateService to every new deployment COMPLETED, in ms, no Fat Controller."""
    revisions = {}
    for name in names:
        revisions[name] = ecs.register_task_definition(
            family=name,
            networkMode="bridge",
            containerDefinitions=[
                {"name": "app", "image": f"{REPOSITORY}:floor", "memory": 256, "essential": True}
            ],
        )["taskDefinition"]["taskDefinitionArn"]
    started = time.perf_counter()
    for name in names:
        ecs.update_service(cluster=cluster, service=name, taskDefinition=revisions[name])
    while not all_completed(ecs, cluster, names, revisions):
        if time.perf_counter() - started > 120:
            raise SystemExit(f"bench: the simulator did not complete {cluster}'s deployments")
        time.sleep(0.05)
    return (time.perf_counter() - started) * 1000
