"""Dual deploys: services of a dual-running migration phase go out on ECS and on their legacy
Jenkins job in the same deploy, and a failure on either side brings both back.

Everything is real but AWS and Jenkins: Celery worker processes on Redis share the test
database; they reach ECS through boto3 over HTTP to moto's server with the ECS deployment
simulator (the set-up of tests/deploys/test_rollout_worker_killed.py, whose fixtures are used
here), and the legacy jobs through python-jenkins over HTTP to the stand-in Jenkins, both
running in this process. "Started once" is counted where it happens: every UpdateService ECS
carried out is recorded by a spy in moto's server, every build by the stand-in.
"""

from __future__ import annotations

import logging

import pytest

from builds.models import Build
from clusters.models import (
    Cluster,
    LegacyRun,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Placement,
    PlacementKind,
    Service,
)
from clusters.targets import target_for
from deploys.models import Application, Deploy, RolloutStatus
from deploys.rollout.forward import start_rollout
from deploys.states import State
from tests.deploys import test_rollout_worker_killed as killed
from tests.deploys.test_rollout_worker_killed import (
    REGION,
    REPOSITORY,
    ROLLOUT_TIMEOUT,
    SERVICES,
    WORKER_START,
    Aws,
    built_deploy,
    resends,
    safety_net_until_final,
    set_up_ecs,
    timeline,
)
from tests.jenkins_standin import JenkinsStandin
from tests.remotes import remote_main
from tests.waiting import wait_until

pytestmark = killed.pytestmark  # Redis and PostgreSQL: the workers are other processes
# The moto server with its spy, and the worker processes, as that module sets them up.
aws, worker = killed.aws, killed.worker

JENKINS_USER, JENKINS_TOKEN = "legacy-deployer", "l3gacy-token"
OLD_VERSION = "1.0"  # what the legacy jobs ran before Fat Controller deployed them
JOBS = {name: f"deploy-{name}" for name in SERVICES}  # service: its legacy job
R = RolloutStatus


@pytest.fixture
def jenkins():
    with JenkinsStandin(JENKINS_USER, JENKINS_TOKEN, jobs=tuple(JOBS.values())) as server:
        server.queue_delay = 0
        server.build_seconds = 0.3
        yield server
    assert server.server_errors == []


@pytest.fixture
def workers(worker, jenkins):
    """The worker processes, told where the legacy Jenkins is."""
    worker.env.update(
        {
            "FC_LEGACY_JENKINS_URL": jenkins.url,
            "FC_LEGACY_JENKINS_USER": JENKINS_USER,
            "FC_LEGACY_JENKINS_TOKEN": JENKINS_TOKEN,
            "JENKINS_TIMEOUT": "5",
        }
    )
    return worker


def dual_running(application: Application, user, aws: Aws) -> tuple[Deploy, Build]:
    """Two services in one dual-running migration phase, each on ECS and on its legacy job, and
    a deploy in building whose build passed (its image in ECR)."""
    set_up_ecs(aws)
    Application.objects.filter(pk=application.pk).update(
        image_repository=REPOSITORY, soak_seconds=1, phase_timeout_seconds=600
    )
    application.refresh_from_db()
    cluster = Cluster.objects.create(name="demo", region=REGION)
    plan = MigrationPlan.objects.create(application=application)
    phase = MigrationPhase.objects.create(
        plan=plan, position=1, name="workers and webs", state=MigrationState.DUAL_RUNNING
    )
    for name, (process_type, rollout_phase) in SERVICES.items():
        service = Service.objects.create(
            application=application,
            name=name,
            process_type=process_type,
            phase=rollout_phase,
            migration_phase=phase,
        )
        # The legacy placement first: a tick starts it before the ECS side, so a worker that
        # dies on its way to ECS has already triggered the job.
        Placement.objects.create(
            service=service,
            kind=PlacementKind.LEGACY,
            legacy_job=JOBS[name],
            legacy_version=OLD_VERSION,
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
    return built_deploy(application, user, aws)


def legacy_placement(name: str) -> Placement:
    return Placement.objects.select_related("service").get(
        service__name=name, kind=PlacementKind.LEGACY
    )


def rollouts(deploy_id: int) -> dict[tuple[str, str], object]:
    """The deploy's rollout rows by (service, kind)."""
    deploy = Deploy.objects.get(pk=deploy_id)
    return {
        (r.placement.service.name, r.placement.kind): r
        for r in deploy.rollouts.select_related("placement__service")
    }


def versions_built(jenkins: JenkinsStandin, name: str) -> list[str]:
    return [b.parameters["VERSION"] for b in jenkins.builds(JOBS[name])]


def full_timeline(deploy_id: int, jenkins: JenkinsStandin) -> str:
    runs = [
        f"  legacy run {r.pk} {r.placement.legacy_job} {r.purpose} {r.version}: queue "
        f"{r.queue_id} build #{r.build_number} {r.result}"
        for r in LegacyRun.objects.select_related("placement").order_by("pk")
    ]
    builds = [
        f"  jenkins {b.job} #{b.number} {b.parameters.get('VERSION')} {b.result}"
        for job in JOBS.values()
        for b in jenkins.builds(job)
    ]
    return "\n".join([timeline(deploy_id), *runs, *builds])


# ------------------------------------------------------------------------------ tests


def test_a_dual_deploy_goes_out_on_both_sides_once_and_succeeds(
    workers, aws, jenkins, application, user, demo_remote
):
    workers.start("worker")
    deploy, build = dual_running(application, user, aws)
    version = build.image_tag
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT)

    assert state == State.SUCCEEDED, full_timeline(deploy.pk, jenkins)
    deploy.refresh_from_db()
    assert remote_main(demo_remote) == deploy.candidate_sha
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-web", "shop-web:2"),
    ]
    for name in SERVICES:
        (ran,) = jenkins.builds(JOBS[name])
        assert ran.result == "SUCCESS"
        assert ran.parameters["SERVICE"] == name
        assert ran.parameters["VERSION"] == version
        assert ran.parameters["IMAGE"] == f"{REPOSITORY}:{version}"
        assert ran.parameters["COMMIT"] == deploy.candidate_sha
        placement = legacy_placement(name)
        (run,) = LegacyRun.objects.filter(placement=placement)
        assert (run.purpose, run.version, run.result) == ("deploy", version, "SUCCESS")
        assert run.build_number == ran.number and "Rollout complete" in run.log
        assert ran.parameters["FC_REQUEST"] == run.request
        assert target_for(placement).current(placement) == version
    rows = rollouts(deploy.pk)
    assert {r.status for r in rows.values()} == {R.DONE}
    assert rows[("shop-worker", "legacy")].revision_before == OLD_VERSION
    assert rows[("shop-worker", "legacy")].revision_made == version
    # Both sides of a service went out in the same rollout phase: phase 2 started only once
    # both sides of phase 1 were out.
    assert rows[("shop-web", "legacy")].started_at >= rows[("shop-worker", "legacy")].finished_at
    assert rows[("shop-web", "ecs")].started_at >= rows[("shop-worker", "legacy")].finished_at
    messages = list(deploy.events.values_list("message", flat=True))
    assert (
        f"shop-worker (legacy job deploy-shop-worker): {OLD_VERSION} -> {version} (job run "
        in "\n".join(messages)
    )


def test_a_failed_legacy_job_brings_the_ecs_side_back_too(
    workers, aws, jenkins, application, user, demo_remote
):
    main_before = remote_main(demo_remote)
    jenkins.plan(JOBS["shop-worker"], "fail", "succeed")  # the deploy fails, its restore runs
    workers.start("worker")
    deploy, build = dual_running(application, user, aws)
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT)

    assert state == State.ROLLED_BACK, full_timeline(deploy.pk, jenkins)
    assert remote_main(demo_remote) == main_before
    failed = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK).message
    number = jenkins.builds(JOBS["shop-worker"])[0].number
    assert "the legacy side of shop-worker failed: legacy job deploy-shop-worker build " in failed
    assert f"legacy job deploy-shop-worker build #{number} ended FAILURE: " in failed
    assert "ERROR: rollout failed" in failed
    # Phase 1's ECS side was started beside the job and is back on what it ran; phase 2 was
    # never touched on either side.
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-worker", "shop-worker:1"),
    ]
    assert aws.describe("shop-worker")["taskDefinition"].endswith("shop-worker:1")
    assert versions_built(jenkins, "shop-worker") == [build.image_tag, OLD_VERSION]
    assert versions_built(jenkins, "shop-web") == []
    rows = rollouts(deploy.pk)
    assert rows[("shop-worker", "ecs")].status == R.ROLLED_BACK
    assert rows[("shop-worker", "legacy")].status == R.ROLLED_BACK
    assert {rows[("shop-web", kind)].status for kind in ("ecs", "legacy")} == {R.PENDING}
    placement = legacy_placement("shop-worker")
    assert target_for(placement).current(placement) == OLD_VERSION
    ended = deploy.events.get(to_state=State.ROLLED_BACK, from_state=State.ROLLING_BACK).message
    assert "shop-worker on demo runs shop-worker:1" in ended
    assert f"shop-worker (legacy job deploy-shop-worker) runs {OLD_VERSION}" in ended


def test_a_failed_ecs_side_reruns_the_legacy_job_with_the_recorded_version(
    workers, aws, jenkins, application, user, demo_remote
):
    workers.start("worker")
    deploy, build = dual_running(application, user, aws)
    aws.simulator.fail_new_tasks("demo", "shop-worker")  # phase 1's ECS side: OOM
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT)

    assert state == State.ROLLED_BACK, full_timeline(deploy.pk, jenkins)
    failed = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK).message
    assert "the ECS side of shop-worker failed: " in failed
    assert "of shop-worker:2 stopped: OutOfMemoryError" in failed
    assert versions_built(jenkins, "shop-worker") == [build.image_tag, OLD_VERSION]
    restore = LegacyRun.objects.get(placement=legacy_placement("shop-worker"), purpose="restore")
    assert (restore.version, restore.image, restore.result) == (
        OLD_VERSION,
        f"{REPOSITORY}:{OLD_VERSION}",
        "SUCCESS",
    )
    assert jenkins.builds(JOBS["shop-worker"])[1].parameters["FC_REQUEST"] == restore.request
    rows = rollouts(deploy.pk)
    assert rows[("shop-worker", "legacy")].restore_handle == str(restore.pk)
    assert {rows[("shop-worker", kind)].status for kind in ("ecs", "legacy")} == {R.ROLLED_BACK}
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-worker", "shop-worker:1"),
    ]
    assert versions_built(jenkins, "shop-web") == []
    placement = legacy_placement("shop-worker")
    assert target_for(placement).current(placement) == OLD_VERSION


def test_a_worker_killed_mid_dual_deploy_is_replaced_and_each_side_starts_once(
    workers, aws, jenkins, application, user, caplog
):
    caplog.set_level(logging.WARNING, logger="deploys.resume")
    worker_a = workers.start("killed-a")
    deploy, build = dual_running(application, user, aws)
    # Phase 2: its legacy job is triggered first, then ECS applies the update and its answer
    # is held: worker A dies with both sides of shop-web started and neither ECS's deployment
    # nor the job's build written down as out.
    aws.hold = ("shop-web", "shop-web:2")
    start_rollout(deploy, build)

    wait_until(aws.held.is_set, WORKER_START, lambda: f"worker A's UpdateService\n{worker_a.log}")
    worker_a.kill()
    aws.release.set()
    dying = rollouts(deploy.pk)
    assert dying[("shop-web", "ecs")].start_handle == ""  # ECS started it; we never heard
    assert dying[("shop-web", "legacy")].start_handle != ""  # the job's run was written first
    assert len(jenkins.builds(JOBS["shop-web"])) <= 1

    workers.start("rescuer-b")
    state = safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT)

    assert state == State.SUCCEEDED, full_timeline(deploy.pk, jenkins)
    assert resends(caplog, deploy.pk, State.DEPLOYING) >= 1  # the tick died with worker A
    # Each side of each service was started exactly once.
    assert [(u.service, u.revision) for u in aws.updates] == [
        ("shop-worker", "shop-worker:2"),
        ("shop-web", "shop-web:2"),
    ]
    for name in SERVICES:
        assert versions_built(jenkins, name) == [build.image_tag], full_timeline(deploy.pk, jenkins)
        assert LegacyRun.objects.filter(placement=legacy_placement(name)).count() == 1
    rows = rollouts(deploy.pk)
    assert {r.status for r in rows.values()} == {R.DONE}
    assert rows[("shop-web", "ecs")].start_handle == aws.updates[1].deployment_id
    legacy_started = deploy.events.filter(
        message__startswith="shop-web (legacy job deploy-shop-web): "
    )
    assert legacy_started.count() == 1


def test_a_legacy_job_hung_past_the_phase_timeout_is_stopped_and_both_sides_restored(
    workers, aws, jenkins, application, user
):
    jenkins.plan(JOBS["shop-worker"], "hang", "succeed")
    workers.start("worker")
    deploy, build = dual_running(application, user, aws)
    Application.objects.filter(pk=application.pk).update(phase_timeout_seconds=4)
    start_rollout(deploy, build)

    state = safety_net_until_final(deploy.pk, ROLLOUT_TIMEOUT)

    assert state == State.ROLLED_BACK, full_timeline(deploy.pk, jenkins)
    failed = deploy.events.get(from_state=State.DEPLOYING, to_state=State.ROLLING_BACK).message
    hung, restored = jenkins.builds(JOBS["shop-worker"])
    assert failed == (
        "the legacy side of shop-worker failed: "
        f"job run of {build.image_tag} on shop-worker (legacy job deploy-shop-worker) did not "
        f"complete within 4 s: 0 of 1 job running (Jenkins build #{hung.number} of "
        "deploy-shop-worker has not finished). Rolling back."
    )
    assert hung.result == "ABORTED"  # stopped before the restore ran
    assert (restored.parameters["VERSION"], restored.result) == (OLD_VERSION, "SUCCESS")
    assert aws.describe("shop-worker")["taskDefinition"].endswith("shop-worker:1")
    rows = rollouts(deploy.pk)
    assert {rows[("shop-worker", kind)].status for kind in ("ecs", "legacy")} == {R.ROLLED_BACK}
