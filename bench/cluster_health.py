"""How soon the cluster health checks act (README, "Cluster health"), through the real beat.

moto's ThreadedMotoServer runs in this process with the ECS simulator installed and its clock
running in real time (devtools/ecs_simulator.py); a real Celery worker process and a real
beat process talk to it through AWS_ENDPOINT_URL with dummy credentials, as in production,
with short intervals pinned for both: FC_AGENT_WATCH_SECONDS=1, FC_AGENT_GRACE_SECONDS=2 and
FC_CRASH_LOOP_WATCH_SECONDS=1 (production's are 60, 300 and 10: what the checks add to
those is the figure, the intervals themselves are settings). The cluster has
INSTANCES container instances of m5.large, each keeping 512 MiB for the system, and
drain_disconnected: true.

Agent disconnect: each run sets one instance's agent disconnected in the simulator (the
start) and ends when this process, reading the database every 20 ms, sees that instance's
report open with drained set and ECS answering DRAINING for it. The figure is that time less
the grace (what the watch adds past it: up to one watch interval to see the disconnect, and
up to one more past the grace, plus the check itself). The run then reconnects the agent and
waits for the report to close and the instance to be ACTIVE again before the next.

Crash loop: each run makes a new ECS service of one task (a new Placement of an application
whose crash_loop is scale_to_zero), OOM-kills its task (simulator fail_running_task: one
host), waits for the replacement to run on the next host, and OOM-kills that one: the start.
The end is this process, asking DescribeServices every 20 ms, seeing its desired count 0.

Baselines, measured in the same run from this process against the same server: the raw
boto3 calls each check cannot do without (agent: ListContainerInstances,
DescribeContainerInstances, UpdateContainerInstancesState; crash loop: ListTasks of the
stopped tasks, DescribeTasks, UpdateService), and one check run in this process on a cluster
with nothing to do (clusters.health.watch.watch_ecs, and kills_on + check_crash_loops).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

from bench.simulated_aws import DUMMY_AWS, REGION, simulated_aws, wait_for

RUNS = 10
CLUSTER = "bench-health"
INSTANCES = 3
TYPE_MEMORY = 8192  # m5.large
TASK_DEFINITION_FAMILY = "bench-loop"
SETTINGS = {
    "FC_AGENT_WATCH_SECONDS": "1",
    "FC_AGENT_GRACE_SECONDS": "2",
    "FC_CRASH_LOOP_WATCH_SECONDS": "1",
}
GRACE_SECONDS = float(SETTINGS["FC_AGENT_GRACE_SECONDS"])
TASK_START_SECONDS = 0.2
POLL_SECONDS = 0.02
TIMEOUT = 60.0
WORKER_LOG, BEAT_LOG = "worker-cluster-health.log", "beat-cluster-health.log"


def run(var_dir: Path) -> dict[str, dict]:
    from bench.__main__ import ROOT, start_worker, summary

    with simulated_aws(task_start_seconds=TASK_START_SECONDS) as aws:
        aws.sim.start_clock(0.02)
        env = {**DUMMY_AWS, "AWS_ENDPOINT_URL": aws.url, **SETTINGS}
        world = _world(aws)
        with mock.patch.dict(os.environ, env):  # the in-process checks reach the same server
            baselines = _baselines(aws, world)
        worker = start_worker(var_dir / WORKER_LOG, env=env)
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fatcontroller", "beat", "--loglevel=WARNING",
             "--schedule", str(var_dir / "beat-cluster-health")],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=(var_dir / BEAT_LOG).open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            agent = [_agent_run(aws, world, n) for n in range(RUNS)]
            loops = [_loop_run(aws, world, n) for n in range(RUNS)]
        finally:
            for process in (beat, worker):
                process.terminate()
                process.wait(timeout=30)
    conditions = (
        f"moto server + ECS simulator in the bench process, a real worker (concurrency 1) and "
        f"beat; agent watch every {SETTINGS['FC_AGENT_WATCH_SECONDS']} s, grace "
        f"{SETTINGS['FC_AGENT_GRACE_SECONDS']} s, crash loop check every "
        f"{SETTINGS['FC_CRASH_LOOP_WATCH_SECONDS']} s; {INSTANCES} container instances"
    )
    return {
        "agent disconnect past grace -> reported and drained": {
            **summary([s - GRACE_SECONDS * 1000 for s in agent]),
            "conditions": conditions,
            "from_disconnect": summary(agent),
        },
        "agent watch: raw boto3 calls (list, describe, drain)": baselines["agent calls"],
        "agent watch: one check, nothing to do (in process)": baselines["agent check"],
        "second OOM kill -> crash loop scaled to zero": {
            **summary(loops),
            "conditions": conditions,
        },
        "crash loop: raw boto3 calls (stopped tasks, describe, scale)": baselines["loop calls"],
        "crash loop: one check, nothing to do (in process)": baselines["loop check"],
    }


def _world(aws) -> dict:
    from clusters.models import Cluster
    from deploys.models import Application

    aws.ecs.create_cluster(clusterName=CLUSTER)
    arns = [
        aws.sim.add_container_instance(
            CLUSTER, region=REGION, registered_memory=TYPE_MEMORY - 512, endpoint_url=aws.url
        )
        for _ in range(INSTANCES)
    ]
    described = aws.ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
    ec2_ids = {
        i["containerInstanceArn"]: i["ec2InstanceId"] for i in described["containerInstances"]
    }
    revision = aws.ecs.register_task_definition(
        family=TASK_DEFINITION_FAMILY,
        containerDefinitions=[
            {"name": "app", "image": "bench-loop:1", "memory": 256, "essential": True}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    cluster = Cluster.objects.create(name=CLUSTER, region=REGION, drain_disconnected=True)
    app = Application.objects.create(
        slug="bench-health",
        name="Bench health",
        git_remote_url="/nowhere.git",
        crash_loop="scale_to_zero",
    )
    return {"cluster": cluster, "app": app, "arns": arns, "ec2": ec2_ids, "revision": revision}


def _timed(what) -> float:
    started = time.perf_counter()
    what()
    return (time.perf_counter() - started) * 1000


def _baselines(aws, world) -> dict[str, dict]:
    from bench.__main__ import summary
    from clusters.health.crash_loops import check_crash_loops, kills_on
    from clusters.health.watch import watch_ecs

    ecs, arns, cluster = aws.ecs, world["arns"], world["cluster"]

    def agent_calls():
        listed = ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
        ecs.describe_container_instances(cluster=CLUSTER, containerInstances=listed)
        for status in ("DRAINING", "ACTIVE"):  # and back, so the world is as it was
            ecs.update_container_instances_state(
                cluster=CLUSTER, containerInstances=arns[:1], status=status
            )

    def loop_calls():
        stopped = ecs.list_tasks(cluster=CLUSTER, desiredStatus="STOPPED")["taskArns"]
        if stopped:
            ecs.describe_tasks(cluster=CLUSTER, tasks=stopped[:100])
        ecs.update_service(cluster=CLUSTER, service=world["baseline_service"], desiredCount=0)

    world["baseline_service"] = _service(aws, world, "baseline")
    return {
        "agent calls": summary([_timed(agent_calls) for _ in range(RUNS)]),
        "agent check": summary([_timed(lambda: watch_ecs(cluster)) for _ in range(RUNS)]),
        "loop calls": summary([_timed(loop_calls) for _ in range(RUNS)]),
        "loop check": summary(
            [_timed(lambda: check_crash_loops(cluster, kills_on(cluster))) for _ in range(RUNS)]
        ),
    }


def _agent_run(aws, world, n: int) -> float:
    from clusters.models import ClusterReport, ReportKind

    arn = world["arns"][n % INSTANCES]
    ec2_id = world["ec2"][arn]
    reports = ClusterReport.objects.filter(
        cluster=world["cluster"], kind=ReportKind.AGENT_DISCONNECTED, subject=ec2_id
    )
    started = time.monotonic()
    aws.sim.set_agent_connected(CLUSTER, arn, False)

    def drained() -> bool:
        return reports.filter(closed_at__isnull=True, drained=True).exists() and (
            _status(aws, arn) == "DRAINING"
        )

    wait_for(drained, f"{ec2_id} reported and drained", timeout=TIMEOUT, log=WORKER_LOG,
             every=POLL_SECONDS)  # fmt: skip
    took = (time.monotonic() - started) * 1000
    aws.sim.set_agent_connected(CLUSTER, arn, True)
    wait_for(
        lambda: (
            not reports.filter(closed_at__isnull=True).exists() and _status(aws, arn) == "ACTIVE"
        ),
        f"{ec2_id}'s report closed and the drain undone",
        timeout=TIMEOUT,
        log=WORKER_LOG,
    )
    return took


def _status(aws, arn: str) -> str:
    described = aws.ecs.describe_container_instances(cluster=CLUSTER, containerInstances=[arn])
    return described["containerInstances"][0]["status"]


def _service(aws, world, name: str) -> str:
    """A new ECS service of one running task, placed for the bench application."""
    from clusters.models import Placement, ProcessType, Service

    ecs_name = f"bench-loop-{name}"
    aws.ecs.create_service(
        cluster=CLUSTER, serviceName=ecs_name, taskDefinition=world["revision"], desiredCount=1
    )
    service = Service.objects.create(
        application=world["app"], name=f"loop-{name}", process_type=ProcessType.WORKER
    )
    Placement.objects.create(
        service=service, cluster=world["cluster"], ecs_service_name=ecs_name, container_name="app"
    )
    wait_for(lambda: _running(aws, ecs_name), f"{ecs_name} to run", timeout=TIMEOUT, log=WORKER_LOG)
    return ecs_name


def _running(aws, ecs_name: str) -> list[str]:
    return aws.ecs.list_tasks(cluster=CLUSTER, serviceName=ecs_name, desiredStatus="RUNNING")[
        "taskArns"
    ]


def _desired(aws, ecs_name: str) -> int:
    (service,) = aws.ecs.describe_services(cluster=CLUSTER, services=[ecs_name])["services"]
    return service["desiredCount"]


def _loop_run(aws, world, n: int) -> float:
    ecs_name = _service(aws, world, f"{n:03d}")
    (first,) = _running(aws, ecs_name)
    aws.sim.fail_running_task(first)  # one host: not a loop yet
    wait_for(
        lambda: [t for t in _running(aws, ecs_name) if t != first],
        f"{ecs_name}'s replacement to run",
        timeout=TIMEOUT,
        log=WORKER_LOG,
    )
    (second,) = _running(aws, ecs_name)
    started = time.monotonic()
    aws.sim.fail_running_task(second)  # the next host: a loop
    wait_for(lambda: _desired(aws, ecs_name) == 0, f"{ecs_name} scaled to zero",
             timeout=TIMEOUT, log=WORKER_LOG, every=POLL_SECONDS)  # fmt: skip
    return (time.monotonic() - started) * 1000
