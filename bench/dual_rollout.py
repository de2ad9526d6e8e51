"""A dual-running rollout's wall time against the slower of its two sides alone.

While a service migrates, a deploy starts its ECS placement and its legacy job together, and
the phase is out only when both are. The goal (issue 11): the dual rollout takes at most 1.1x
the slower side alone, so running both sides costs waiting for the slower one, not the sum.

Conditions, all in one run: moto's ThreadedMotoServer with the ECS simulator in this process
(TASKS_PER_SERVICE tasks a service, each new task starting TASK_START_SECONDS after the one
before); the stand-in Jenkins (devtools/jenkins_standin.py) in this process, one legacy job a
service, each build taking LEGACY_BUILD_SECONDS after a QUEUE_DELAY quiet period; a real
Celery worker with FC_ROLLOUT_POLL_SECONDS=1 and no beat. One application of SERVICES
services in one phase, each with an ECS and a legacy placement, in one migration phase whose
state picks the side: cut_over (ECS alone), planned (legacy alone), dual_running (both).
The three kinds run ROUNDS times each, interleaved (ECS, legacy, dual, ECS, ...), so that a
slower machine moment falls on every kind alike; each figure is the median of its rounds.

Wall time: from the DeployEvent into `deploying` to the one into `verifying` (image check,
starts, then watched until every placement is out); the soak is not in it. A rollout is
seen out at a tick, so every time is rounded up to the next tick: a side that finishes just
after a tick costs a whole poll more, which is why the legacy build's length is kept clear
of a whole number of polls (a 4.0 s build, finishing right at a tick, made "legacy alone"
come out slower than "dual", whose ticks fell later).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.simulated_aws import (
    MANIFEST,
    REGION,
    deploy_state,
    is_final,
    repository,
    simulated_aws,
    start_built_deploy,
    start_services,
    wait_for,
    worker_on,
)

SERVICES = 3
ROUNDS = 5
TASKS_PER_SERVICE = 4
TASK_START_SECONDS = 2.0
LEGACY_BUILD_SECONDS = 7.5
QUEUE_DELAY = 0.2
SOAK_SECONDS = 1
POLL_SECONDS = "1"
GOAL = 1.1
REPOSITORY_NAME = "bench-dual"
REPOSITORY = repository(REPOSITORY_NAME)
CLUSTER = "dual"
LOG = "worker-dual-rollout.log"
KINDS = ("ecs_alone", "legacy_alone", "dual")


def run(var_dir: Path) -> dict[str, dict]:
    from devtools.jenkins_standin import JenkinsStandin

    work = var_dir / "dual-rollout"
    work.mkdir(parents=True, exist_ok=True)
    names = [f"dual-{n}" for n in range(SERVICES)]
    jobs = [f"legacy-deploy-{name}" for name in names]
    jenkins = JenkinsStandin(user="bench", token="bench-token", jobs=jobs)  # noqa: S106
    jenkins.queue_delay = QUEUE_DELAY
    jenkins.build_seconds = LEGACY_BUILD_SECONDS
    jenkins.executors = SERVICES
    times: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with jenkins, simulated_aws(task_start_seconds=TASK_START_SECONDS) as aws:
        aws.sim.start_clock(interval=0.02)
        aws.ecr.create_repository(repositoryName=REPOSITORY_NAME)
        settings = {
            "FC_ROLLOUT_POLL_SECONDS": POLL_SECONDS,
            "FC_LEGACY_JENKINS_URL": jenkins.url,
            "FC_LEGACY_JENKINS_USER": jenkins.user,
            "FC_LEGACY_JENKINS_TOKEN": jenkins.token,
        }
        app, user, phase = _make_application(work, aws.ecs, names, jobs)
        with worker_on(aws.url, var_dir / LOG, **settings):
            for round_ in range(ROUNDS):
                for kind in KINDS:
                    tag = f"{kind}-{round_}"
                    aws.ecr.put_image(
                        repositoryName=REPOSITORY_NAME, imageManifest=MANIFEST, imageTag=tag
                    )
                    times[kind].append(_one_rollout(app, user, phase, kind, tag))
        aws.sim.stop_clock()
    medians = {kind: statistics.median(found) for kind, found in times.items()}
    slower = max(medians["ecs_alone"], medians["legacy_alone"])
    conditions = (
        f"moto's ThreadedMotoServer + ECS simulator and the stand-in Jenkins in one process, "
        f"real worker (FC_ROLLOUT_POLL_SECONDS={POLL_SECONDS}, no beat); {SERVICES} services "
        f"in one phase, each an ECS service of {TASKS_PER_SERVICE} tasks starting "
        f"{TASK_START_SECONDS} s apart and a legacy job of {LEGACY_BUILD_SECONDS} s builds; "
        f"median of {ROUNDS} rounds, the kinds interleaved; a rollout is seen out at a tick, "
        f"so each time is rounded up to the {POLL_SECONDS} s poll"
    )
    figures = {
        f"dual_rollout_{kind}": {
            "count": len(found),
            "median": round(medians[kind], 2),
            "p95": "",  # too few rounds for one
            "max": round(max(found), 2),
            "unit": "s",
            "rounds_s": [round(t, 2) for t in found],
            "conditions": conditions,
        }
        for kind, found in times.items()
    }
    figures["dual_rollout_against_slower_side"] = {
        "count": ROUNDS,
        "median": round(medians["dual"] / slower, 3),
        "p95": "",
        "max": "",
        "unit": "x",
        "goal": f"the dual rollout within {GOAL}x of the slower side alone "
        f"(here {'met' if medians['dual'] <= GOAL * slower else 'NOT met'})",
        "slower_side": "ecs_alone" if slower == medians["ecs_alone"] else "legacy_alone",
        "conditions": conditions,
    }
    return figures


def _one_rollout(app, user, phase, kind: str, tag: str) -> float:
    from clusters.models import MigrationState
    from deploys.states import State

    state = {
        "ecs_alone": MigrationState.CUT_OVER,
        "legacy_alone": MigrationState.PLANNED,
        "dual": MigrationState.DUAL_RUNNING,
    }[kind]
    # The bench sets the phase's state directly: it measures the rollout, not the moves.
    type(phase).objects.filter(pk=phase.pk).update(state=state)
    deploy = start_built_deploy(app, user, tag)
    wait_for(lambda: is_final(deploy), f"the {kind} deploy #{deploy.pk}", timeout=300, log=LOG)
    if deploy_state(deploy) != State.SUCCEEDED:
        raise SystemExit(f"bench: the {kind} deploy #{deploy.pk} ended {deploy_state(deploy)}")
    touched = {r.placement.kind for r in deploy.rollouts.select_related("placement")}
    expected = {"ecs_alone": {"ecs"}, "legacy_alone": {"legacy"}, "dual": {"ecs", "legacy"}}
    if touched != expected[kind]:
        raise SystemExit(f"bench: the {kind} deploy #{deploy.pk} touched {sorted(touched)}")
    deploying = deploy.events.get(from_state=State.BUILDING, to_state=State.DEPLOYING).created_at
    verifying = deploy.events.get(from_state=State.DEPLOYING, to_state=State.VERIFYING).created_at
    return (verifying - deploying).total_seconds()


def _make_application(work: Path, ecs, names: list[str], jobs: list[str]):
    from bench.__main__ import bench_user
    from bench.slot_handoff import make_remote
    from clusters.models import (
        Cluster,
        MigrationPhase,
        MigrationPlan,
        Placement,
        PlacementKind,
        ProcessType,
        Service,
    )
    from deploys.models import Application

    start_services(ecs, CLUSTER, names, f"{REPOSITORY}:base", TASKS_PER_SERVICE, LOG)
    remote = make_remote(work / "remote" / "remote.git", 1)
    app = Application.objects.create(
        slug="bench-dual",
        name="Bench dual rollout",
        git_remote_url=str(remote),
        image_repository=REPOSITORY,
        soak_seconds=SOAK_SECONDS,
        phase_timeout_seconds=300,
    )
    plan = MigrationPlan.objects.create(application=app, proof_deploys=0, proof_hours=0)
    phase = MigrationPhase.objects.create(plan=plan, position=1, name="all")
    cluster = Cluster.objects.create(name=CLUSTER, region=REGION)
    for name, job in zip(names, jobs, strict=True):
        service = Service.objects.create(
            application=app,
            name=name,
            process_type=ProcessType.WORKER,
            phase=1,
            migration_phase=phase,
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
        Placement.objects.create(
            service=service, kind=PlacementKind.LEGACY, legacy_job=job, legacy_version="base"
        )
    user = bench_user()
    return app, user, phase
