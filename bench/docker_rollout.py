"""Docker hosts: a rollout's wall time against the containers' own start-to-healthy time, and
a real OOM kill to its restore starting.

Conditions: a real Docker engine (DOCKER_HOST's, or a private dockerd on vfs that this bench
starts and stops by its pid: devtools/docker_engine.py); the demo's busybox httpd image
(devtools/docker_images.py, built locally, never pulled) under a hard memory limit, on
network "none" (each container its own loopback), with a health check every HEALTH_INTERVAL;
a real Celery worker with FC_ROLLOUT_POLL_SECONDS=1, no beat. One application of two
services (rollout phases 1 and 2) of REPLICAS replicas each, max_surge 200 (a whole new set
at once), min_healthy 100.

Rollout: from the DeployEvent into `deploying` to the one into `verifying`, ROUNDS rounds,
each to a new version. The baseline, measured in the same run just before each round: the
same 2 x REPLICAS containers created directly through the docker SDK (one phase after the
other, as the rollout does), from the first create to the last of them reporting healthy.

OOM kill to restore: a version whose containers allocate past their memory limit; from the
engine's first "oom" event of the round (its own record of the kill, on the same machine's
clock) to the DeployEvent into `rolling_back`, OOM_ROUNDS rounds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from bench.simulated_aws import deploy_state, is_final, start_built_deploy, wait_for

REPLICAS = 3
ROUNDS = 3
OOM_ROUNDS = 5
HEALTH_INTERVAL = 0.5
POLL_SECONDS = "1"
REPOSITORY = "fatcontroller-demo/http"
LOG = "worker-docker-rollout.log"
PORT = 8080
GOAL_RATIO = 1.2
GOAL_OOM_MS = 1000


def config(version: str) -> dict:
    return {
        "replicas": REPLICAS,
        "env": {"VERSION": version, "PORT": str(PORT)},
        "network": "none",
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "/dev/null", f"http://127.0.0.1:{PORT}/"],
            "interval": HEALTH_INTERVAL,
            "timeout": 2,
            "retries": 3,
            "start_period": 0,
        },
        "memory": "16m",
        "stop_timeout": 1,
        "max_surge": 200,
        "min_healthy": 100,
        "grace": 1,
    }


def run(var_dir: Path) -> dict[str, dict]:
    from bench.__main__ import start_worker
    from devtools import docker_engine

    try:
        engine = docker_engine.engine_from_environment() or docker_engine.start_private_engine()
    except docker_engine.NoEngine as exc:
        print(f"bench: docker_rollout skipped: {exc}")
        return {}
    client = engine.client()
    worker = None
    try:
        app, user = _make_application(var_dir, engine.host)
        worker = start_worker(var_dir / LOG, env={"FC_ROLLOUT_POLL_SECONDS": POLL_SECONDS})
        _deploy(app, user, _image(client, "v0"), "v0")  # the revision the rounds replace
        rollouts, floors = [], []
        for n in range(1, ROUNDS + 1):
            version = f"v{n}"
            image = _image(client, version)
            floors.append(_floor(client, image, version))
            rollouts.append(_deploy(app, user, image, version))
        oom = []
        for n in range(OOM_ROUNDS):
            version = f"oom{n}"
            _image(client, version, oom=True)
            oom.append(_oom_to_restore(app, user, client, version))
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        _remove_containers(client)
        client.close()
        docker_engine.stop_private_engine(engine)
    return _figures(rollouts, floors, oom)


def _figures(rollouts, floors, oom) -> dict[str, dict]:
    conditions = (
        f"a real Docker engine (vfs), the demo's busybox httpd image on network none, 2 "
        f"services x {REPLICAS} replicas in two phases, health check every "
        f"{HEALTH_INTERVAL} s, max_surge 200; a real worker, FC_ROLLOUT_POLL_SECONDS="
        f"{POLL_SECONDS}; {ROUNDS} rounds"
    )
    ratio = statistics.median(r / f for r, f in zip(rollouts, floors, strict=True))
    ordered = sorted(oom)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {
        "docker_rollout": {
            "count": len(rollouts),
            "median": round(statistics.median(rollouts), 2),
            "p95": "",
            "max": round(max(rollouts), 2),
            "unit": "s",
            "rounds_s": [round(r, 2) for r in rollouts],
            "conditions": conditions,
        },
        "docker_start_to_healthy_baseline": {
            "count": len(floors),
            "median": round(statistics.median(floors), 2),
            "p95": "",
            "max": round(max(floors), 2),
            "unit": "s",
            "rounds_s": [round(f, 2) for f in floors],
            "conditions": "the same containers created directly through the docker SDK, the "
            "first create to the last healthy, phase 1 then phase 2, just before each round",
        },
        "docker_rollout_against_baseline": {
            "count": len(rollouts),
            "median": round(ratio, 3),
            "p95": "",
            "max": "",
            "unit": "x",
            "goal": f"within {GOAL_RATIO}x ({'met' if ratio <= GOAL_RATIO else 'NOT met'})",
            "conditions": conditions,
        },
        "docker_oom_kill_to_restore": {
            "count": len(oom),
            "median_ms": round(statistics.median(oom), 1),
            "p95_ms": round(p95, 1),
            "max_ms": round(ordered[-1], 1),
            "goal": f"under {GOAL_OOM_MS} ms "
            f"({'met' if statistics.median(oom) < GOAL_OOM_MS else 'NOT met'}, median)",
            "conditions": "a version whose containers allocate past their 16m limit; the "
            "engine's first oom event to the DeployEvent into rolling_back; "
            f"real worker, FC_ROLLOUT_POLL_SECONDS={POLL_SECONDS}",
        },
    }


def _image(client, version: str, *, oom: bool = False) -> str:
    from devtools.docker_images import demo_image

    return demo_image(client, version, oom=oom)


def _make_application(var_dir: Path, host: str):
    from bench.__main__ import bench_user
    from bench.slot_handoff import make_remote
    from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, ProcessType, Service
    from deploys.models import Application

    work = var_dir / "docker-rollout"
    work.mkdir(parents=True, exist_ok=True)
    app = Application.objects.create(
        slug="bench-docker",
        name="Bench Docker rollout",
        git_remote_url=str(make_remote(work / "remote.git", 1)),
        image_repository=REPOSITORY,
        soak_seconds=0,
        phase_timeout_seconds=120,
    )
    cluster = Cluster.objects.create(name="bench-box", kind=ClusterKind.DOCKER, docker_host=host)
    for phase, name in enumerate(("worker", "web"), start=1):
        service = Service.objects.create(
            application=app, name=name, process_type=ProcessType.WORKER, phase=phase
        )
        Placement.objects.create(
            service=service, kind=PlacementKind.DOCKER, cluster=cluster, docker_config={}
        )
    user = bench_user()
    return app, user


def _deploy(app, user, image: str, version: str) -> float:
    """Deploy `version`; the seconds from deploying to verifying."""
    from clusters.models import Placement
    from deploys.states import State

    Placement.objects.filter(service__application=app).update(docker_config=config(version))
    deploy = start_built_deploy(app, user, image.rsplit(":", 1)[1])
    wait_for(lambda: is_final(deploy), f"the Docker deploy #{deploy.pk}", timeout=300, log=LOG)
    if deploy_state(deploy) != State.SUCCEEDED:
        raise SystemExit(f"bench: Docker deploy #{deploy.pk} ended {deploy_state(deploy)}")
    deploying = deploy.events.get(from_state=State.BUILDING, to_state=State.DEPLOYING)
    verifying = deploy.events.get(from_state=State.DEPLOYING, to_state=State.VERIFYING)
    return (verifying.created_at - deploying.created_at).total_seconds()


def _oom_to_restore(app, user, client, version: str) -> float:
    """Deploy an image that is OOM-killed; ms from the engine's first "oom" event of the round
    (its own record of the kill: the killed containers are gone once restored) to the
    DeployEvent into rolling_back."""
    from clusters.models import Placement
    from deploys.states import State

    Placement.objects.filter(service__application=app).update(docker_config=config(version))
    since = time.time()
    deploy = start_built_deploy(app, user, version)
    wait_for(lambda: is_final(deploy), f"the OOM deploy #{deploy.pk}", timeout=300, log=LOG)
    if deploy_state(deploy) != State.ROLLED_BACK:
        raise SystemExit(f"bench: the OOM deploy #{deploy.pk} ended {deploy_state(deploy)}")
    back = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK)
    events = client.events(
        since=int(since) - 1, until=int(time.time()) + 1, decode=True, filters={"event": "oom"}
    )
    kills = [event["timeNano"] / 1e9 for event in events if event["timeNano"] / 1e9 >= since]
    if not kills:
        raise SystemExit(f"bench: the engine reported no OOM kill for deploy #{deploy.pk}")
    return (back.created_at.timestamp() - min(kills)) * 1000


def _floor(client, image: str, version: str) -> float:
    """The same containers straight through the SDK: first create to last healthy, seconds."""
    options = config(version)
    check = options["healthcheck"]
    started = time.perf_counter()
    made = []
    for phase in (1, 2):
        batch = [
            client.containers.run(
                image,
                detach=True,
                network_mode="none",
                environment=options["env"],
                mem_limit=options["memory"],
                memswap_limit=options["memory"],
                healthcheck={
                    "test": check["test"],
                    "interval": int(check["interval"] * 1e9),
                    "timeout": int(check["timeout"] * 1e9),
                    "retries": check["retries"],
                },
                labels={"org.fatcontroller.bench": f"floor-{version}-{phase}"},
            )
            for _ in range(REPLICAS)
        ]
        made += batch
        deadline = time.monotonic() + 120
        while not all(_healthy(c) for c in batch):
            if time.monotonic() > deadline:
                raise SystemExit("bench: the baseline's containers never turned healthy")
            time.sleep(0.05)
    took = time.perf_counter() - started
    for container in made:
        container.remove(force=True)
    return took


def _healthy(container) -> bool:
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status") == "healthy"


def _remove_containers(client) -> None:
    for label in ("org.fatcontroller.revision", "org.fatcontroller.bench"):
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
