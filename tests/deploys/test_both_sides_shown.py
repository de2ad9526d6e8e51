"""The deploy page and the dashboard show both sides of a service that dual runs: the legacy
job's build link, result and log beside the ECS revision, and the progress bar counts both."""

import re

import pytest
from django.urls import reverse

from clusters.models import (
    Cluster,
    LegacyRun,
    LegacyRunPurpose,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Placement,
    PlacementKind,
    ProcessType,
    Service,
)
from deploys import dashboard, sides
from deploys.models import Deploy, ServiceRollout
from deploys.states import Mode, State


@pytest.fixture
def dual_worker(application):
    plan = MigrationPlan.objects.create(application=application, proof_deploys=1, proof_hours=0)
    phase = MigrationPhase.objects.create(
        plan=plan, position=1, name="workers", state=MigrationState.DUAL_RUNNING
    )
    worker = Service.objects.create(
        application=application,
        name="worker",
        process_type=ProcessType.WORKER,
        phase=1,
        migration_phase=phase,
    )
    cluster = Cluster.objects.create(name="demo")
    ecs = Placement.objects.create(
        service=worker, cluster=cluster, ecs_service_name="shop-worker", container_name="app"
    )
    legacy = Placement.objects.create(
        service=worker, kind=PlacementKind.LEGACY, legacy_job="deploy-<worker>", legacy_version="v1"
    )
    return ecs, legacy


@pytest.fixture
def holder(application, user, dual_worker):
    ecs, legacy = dual_worker
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/x",
        mode=Mode.DEPLOY,
        requester=user,
        state=State.DEPLOYING,
    )
    ServiceRollout.objects.create(
        deploy=deploy,
        placement=ecs,
        phase=1,
        status="done",
        revision_before="arn:aws:ecs:us-east-1:1:task-definition/worker:4",
        revision_made="arn:aws:ecs:us-east-1:1:task-definition/worker:5",
        running_count=2,
        desired_count=2,
    )
    run = LegacyRun.objects.create(
        placement=legacy,
        purpose=LegacyRunPurpose.DEPLOY,
        request="r1",
        version="abc123",
        build_number=17,
        build_url="http://legacy.example/job/deploy-worker/17/",
        result="",
        log="Started by user fatcontroller\n<script>alert(1)</script> deploying abc123\n",
    )
    ServiceRollout.objects.create(
        deploy=deploy,
        placement=legacy,
        phase=1,
        status="updating",
        revision_before="v1",
        revision_made="abc123",
        start_handle=str(run.pk),
    )
    return deploy


def test_a_dual_running_service_is_one_group_with_both_sides(holder):
    [service] = sides.services_of(list(holder.rollouts.select_related("placement__service")))
    assert service.name == "worker" and service.both
    assert [side.kind for side in service.sides] == ["ecs", "legacy"]
    legacy = service.sides[1]
    assert legacy.run.build_number == 17
    assert "deploying abc123" in legacy.log_tail


def test_the_progress_bar_counts_both_sides(holder):
    steps = dashboard.steps(holder, [1], list(holder.rollouts.all()))
    phase = next(step for step in steps if step.label == "Phase 1")
    assert (phase.status, phase.count) == ("current", "1 of 2 out")


def test_the_deploy_page_shows_the_legacy_build_beside_the_ecs_revision(logged_in, holder):
    page = logged_in.get(reverse("deploy", args=[holder.pk])).content.decode()
    rollout = page[page.index("<h2>Rollout</h2>") :]
    assert 'class="rollout-service dual"' in rollout
    assert "both sides" in rollout
    assert "worker:5" in rollout  # the ECS revision
    assert 'href="http://legacy.example/job/deploy-worker/17/"' in rollout
    assert "build #17" in rollout
    assert "legacy job deploy-&lt;worker&gt;" in rollout  # escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt; deploying abc123" in rollout  # the log, escaped
    assert "<script>alert" not in page
    assert re.search(r"Phase 1\s*<span class=\"step-count\">1 of 2 out</span>", page)


def test_the_dashboard_shows_both_sides_of_the_holder(logged_in, holder):
    LegacyRun.objects.filter(build_number=17).update(result="SUCCESS")
    [board] = [b for b in dashboard.board() if b.holder == holder]
    assert [s.name for s in board.holder_dual] == ["worker"]
    page = logged_in.get(reverse("dashboard")).content.decode()
    dual = page[page.index('class="dual-sides"') :]
    dual = dual[: dual.index("</p>")]
    assert "<strong>worker</strong>" in dual
    assert "ECS <code>worker:5</code>: done" in dual
    assert "build #17 SUCCESS: updating" in dual  # the build's link is on the deploy page


def test_a_service_on_one_side_is_not_called_dual(application, user, dual_worker):
    ecs, _legacy = dual_worker
    deploy = Deploy.objects.create(
        application=application, branch="b", mode=Mode.DEPLOY, requester=user, state="deploying"
    )
    ServiceRollout.objects.create(deploy=deploy, placement=ecs, phase=1)
    rows = list(deploy.rollouts.select_related("placement__service"))
    assert not sides.services_of(rows)[0].both
    assert sides.dual_services_of({deploy.pk: rows}) == {deploy.pk: []}


def test_the_api_names_each_rows_side_and_the_legacy_build(logged_in, holder):
    body = logged_in.get(f"/api/deploys/{holder.pk}/").json()
    by_kind = {row["kind"]: row for row in body["rollouts"]}
    assert set(by_kind) == {"ecs", "legacy"}
    assert by_kind["ecs"]["cluster"] == "demo" and by_kind["ecs"]["legacy"] is None
    legacy = by_kind["legacy"]
    assert legacy["cluster"] is None
    assert legacy["legacy"] == {
        "job": "deploy-<worker>",
        "build_number": 17,
        "build_url": "http://legacy.example/job/deploy-worker/17/",
        "result": "",
        "purpose": "deploy",
    }
    assert (legacy["previous_task_definition"], legacy["new_task_definition"]) == ("v1", "abc123")
