"""A migration plan of four phases walked end to end, with real deploys on a real worker.

Four services, one per migration phase, all in rollout phase 1, each on ECS (moto's server
with the ECS simulator) and on its legacy Jenkins job (the stand-in Jenkins). Each phase goes
planned -> dual running -> cut over -> done by a person's move, and every deploy between the
moves touches exactly the sides the plan says: legacy only before dual running, both while
dual running, ECS only after the cut over; done retires the legacy job for good. The proof a
cut over needs is the dual-running deploy itself (proof: 1 deploy, 0 hours).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusters import migration
from clusters.models import (
    Cluster,
    MigrationMove,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Placement,
    PlacementKind,
    ProcessType,
    Service,
)
from deploys.models import Application, Deploy
from deploys.rollout.forward import start_rollout
from deploys.states import State
from devtools.ecs_simulator import create_service
from tests.deploys import test_dual_deploys as dual
from tests.deploys.test_rollout_worker_killed import (
    REGION,
    REPOSITORY,
    ROLLOUT_TIMEOUT,
    built_deploy,
    safety_net_until_final,
)

pytestmark = dual.pytestmark
aws, worker, jenkins, workers = dual.aws, dual.worker, dual.jenkins, dual.workers

NAMES = ("mailer", "worker", "poller", "web")  # migration phase n moves NAMES[n - 1]
S = MigrationState


def job_of(name: str) -> str:
    return f"legacy-deploy-{name}"


@pytest.fixture
def plan(application, aws, jenkins):
    ecs = aws.client("ecs")
    ecs.create_cluster(clusterName="demo")
    for name in NAMES:
        create_service(ecs, cluster="demo", name=name, image=f"{REPOSITORY}:base")
        jenkins.add_job(job_of(name))
    aws.client("ecr").create_repository(repositoryName="demo-shop")
    Application.objects.filter(pk=application.pk).update(
        image_repository=REPOSITORY, soak_seconds=0, phase_timeout_seconds=600
    )
    cluster = Cluster.objects.create(name="demo", region=REGION)
    plan = MigrationPlan.objects.create(application=application, proof_deploys=1, proof_hours=0)
    for position, name in enumerate(NAMES, start=1):
        phase = MigrationPhase.objects.create(plan=plan, position=position, name=f"{name}s")
        service = Service.objects.create(
            application=application,
            name=name,
            process_type=ProcessType.WORKER,
            phase=1,
            migration_phase=phase,
        )
        Placement.objects.create(
            service=service, kind=PlacementKind.LEGACY, legacy_job=job_of(name), legacy_version="0"
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
    return plan


def add_branch(remote: Path, branch: str, work: Path) -> None:
    """A branch off main with one new file, pushed to the bare remote."""
    clone = work / branch.replace("/", "-")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "clone", "-q", str(remote), str(clone)], check=True)
    subprocess.run([*git, "-C", str(clone), "checkout", "-q", "-b", branch], check=True)
    (clone / f"{branch.replace('/', '-')}.txt").write_text(branch)
    subprocess.run([*git, "-C", str(clone), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(clone), "commit", "-q", "-m", branch], check=True)
    subprocess.run([*git, "-C", str(clone), "push", "-q", "origin", branch], check=True)


def ship(application, user, aws, remote: Path, work: Path, n: int) -> Deploy:
    """Deploy a new branch (its build passed, its image pushed) and wait until it is final."""
    branch = f"feature/walk-{n}"
    add_branch(remote, branch, work)
    deploy, build = built_deploy(application, user, aws, branch=branch, image_tag=f"walk-{n}")
    start_rollout(deploy, build)
    assert safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT) == State.SUCCEEDED, dual.timeline(
        deploy.pk
    )
    return deploy


def touched(deploy: Deploy) -> dict[str, set[str]]:
    """Per service, the sides the deploy touched."""
    sides: dict[str, set[str]] = {}
    for row in deploy.rollouts.select_related("placement__service"):
        sides.setdefault(row.placement.service.name, set()).add(row.placement.kind)
    return sides


def expected_sides(moved: int, dual_running: int | None) -> dict[str, set[str]]:
    """Phases before `moved` are done (ECS only); `dual_running` runs both; later: legacy."""
    sides = {}
    for position, name in enumerate(NAMES, start=1):
        if position == dual_running:
            sides[name] = {"ecs", "legacy"}
        elif position <= moved:
            sides[name] = {"ecs"}
        else:
            sides[name] = {"legacy"}
    return sides


def builds_of(jenkins, name: str) -> list[str]:
    return [b.parameters["VERSION"] for b in jenkins.builds(job_of(name))]


def test_four_phases_walked_from_planned_to_done_with_real_deploys(
    workers, aws, jenkins, plan, application, user, demo_remote, tmp_path
):
    workers.start("worker")
    phases = list(plan.phases.order_by("position"))

    first = ship(application, user, aws, demo_remote, tmp_path, 0)
    assert touched(first) == expected_sides(0, None)  # every phase planned: legacy only
    assert aws.updates == []

    deploys = 1
    for position, phase in enumerate(phases, start=1):
        name = NAMES[position - 1]
        with pytest.raises(migration.MigrationRefused, match="dual running only"):
            migration.move(phase, S.CUT_OVER, actor=user, reason="too soon")  # skips a state
        migration.move(phase, S.DUAL_RUNNING, actor=user, reason=f"{name}: both sides now")
        if position < len(phases):  # the next phase waits for this one's cut over
            with pytest.raises(migration.MigrationRefused, match="once the one ahead"):
                migration.move(phases[position], S.DUAL_RUNNING, actor=user, reason="early")
        with pytest.raises(migration.MigrationRefused, match="0 of 1 deploys"):
            migration.move(phase, S.CUT_OVER, actor=user, reason="unproven")

        dual_deploy = ship(application, user, aws, demo_remote, tmp_path, deploys)
        deploys += 1
        assert touched(dual_deploy) == expected_sides(position - 1, position)
        assert builds_of(jenkins, name)[-1] == f"walk-{deploys - 1}"  # the job ran the deploy

        migration.move(phase, S.CUT_OVER, actor=user, reason=f"{name}: ECS proven")
        migration.move(phase, S.DONE, actor=user, reason=f"{name}: legacy retired")
        legacy = Placement.objects.get(service__name=name, kind=PlacementKind.LEGACY)
        assert legacy.retired_at is not None

    last = ship(application, user, aws, demo_remote, tmp_path, deploys)
    assert touched(last) == expected_sides(len(NAMES), None)  # all on ECS only
    # Each legacy job ran for every deploy up to its phase's dual-running one, never after.
    for position, name in enumerate(NAMES, start=1):
        assert builds_of(jenkins, name) == [f"walk-{n}" for n in range(position + 1)]
    # Each ECS service was updated once per deploy from its dual-running one on.
    updated = [u.service for u in aws.updates]
    for position, name in enumerate(NAMES, start=1):
        assert updated.count(name) == len(NAMES) + 2 - position
    moves = MigrationMove.objects.filter(phase__plan=plan)
    assert moves.count() == 3 * len(NAMES)  # refusals recorded nothing
    assert set(moves.values_list("actor_name", flat=True)) == {user.username}
    assert set(plan.phases.values_list("state", flat=True)) == {S.DONE}
