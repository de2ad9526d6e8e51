"""Rollouts and rollbacks on ECS: real boto3 against moto, with the ECS deployment simulator.

The pipeline runs in this process: `drive` runs each step a worker would run, and
`rollout_rounds` moves the simulated ECS clock and runs the ticks the rollout asked for.
"""

import json
from datetime import timedelta

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from django.db.models import F

from clusters.models import Cluster, Placement, ProcessType, Service
from clusters.targets import ecs as ecs_module
from deploys import actions
from deploys.models import Application, Deploy, RolloutStatus, ServiceRollout
from deploys.resume import resume_deploys
from deploys.rollout import ticks
from deploys.states import FINAL_STATES, State
from devtools.ecs_simulator import create_service
from tests.remotes import remote_main

REGION = "us-east-1"
ACCOUNT = "123456789012"
REPOSITORY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/demo-shop"
SERVICES = {"shop-worker": (ProcessType.WORKER, 1), "shop-web": (ProcessType.WEB, 2)}


@pytest.fixture
def ecs(simulator):
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName="demo")
    for service in SERVICES:
        create_service(client, cluster="demo", name=service, image=f"{REPOSITORY}:base")
    boto3.client("ecr", region_name=REGION).create_repository(repositoryName="demo-shop")
    simulator.advance(10)
    return client


@pytest.fixture
def shop(application, ecs):
    Application.objects.filter(pk=application.pk).update(
        image_repository=REPOSITORY, soak_seconds=0, phase_timeout_seconds=600
    )
    cluster = Cluster.objects.create(name="demo", region=REGION)
    for name, (process_type, phase) in SERVICES.items():
        service = Service.objects.create(
            application=application, name=name, process_type=process_type, phase=phase
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
    application.refresh_from_db()
    return application


def push_image(tag: str) -> None:
    manifest = '{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": []}'  # noqa: E501
    boto3.client("ecr", region_name=REGION).put_image(
        repositoryName="demo-shop", imageManifest=manifest, imageTag=tag
    )


def run_one(sent_tasks, capture) -> None:
    from celery import current_app

    current_app.loader.import_default_modules()
    name, deploy_id = sent_tasks.sent.pop(0)
    with capture(execute=True):
        current_app.tasks[name].apply(args=[deploy_id], throw=True)


def queue_and_build(shop, user, sent_tasks, capture, *, branch="feature/clean-merge", push=True):
    """Queue a deploy and run it until its build passed (the image is pushed, as CI would)."""
    with capture(execute=True):
        deploy = actions.queue_deploy(
            application=shop.slug, branch=branch, mode="deploy", requester=user
        )
    while Deploy.objects.get(pk=deploy.pk).state in (State.MERGING, State.QUEUED):
        run_one(sent_tasks, capture)
    if push:
        push_image(Deploy.objects.get(pk=deploy.pk).candidate_sha[:12])
    while sent_tasks.sent and Deploy.objects.get(pk=deploy.pk).state == State.BUILDING:
        run_one(sent_tasks, capture)
    return Deploy.objects.get(pk=deploy.pk)


def rollout_rounds(deploy, simulator, sent_tasks, drive, *, rounds=60, until=FINAL_STATES):
    """Move ECS's clock a second at a time and run the ticks, until the deploy is in `until`."""
    for _ in range(rounds):
        drive()
        deploy.refresh_from_db()
        if deploy.state in until:
            return deploy
        simulator.advance(1)
        sent_tasks.release_later()
    raise AssertionError(f"deploy #{deploy.pk} still {deploy.state} after {rounds} rounds")


def why_it_moved(deploy, state) -> str:
    """The message of the state change into `state` (not the notes made while in it)."""
    return deploy.events.exclude(from_state=F("to_state")).get(to_state=state).message


def service_revision(client, name: str) -> str:
    described = client.describe_services(cluster="demo", services=[name])["services"][0]
    return described["taskDefinition"].rsplit("/", 1)[-1]


def image_of(client, revision: str) -> str:
    td = client.describe_task_definition(taskDefinition=revision)["taskDefinition"]
    return td["containerDefinitions"][0]["image"]


def test_a_two_phase_rollout_goes_out_in_order_and_is_merged(
    shop, user, ecs, simulator, sent_tasks, drive, demo_remote, django_capture_on_commit_callbacks
):
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    assert deploy.state == State.DEPLOYING

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.SUCCEEDED
    assert remote_main(demo_remote) == deploy.candidate_sha
    image = f"{REPOSITORY}:{deploy.candidate_sha[:12]}"
    for name in SERVICES:
        assert service_revision(ecs, name) == f"{name}:2"
        assert image_of(ecs, f"{name}:2") == image
        assert image_of(ecs, f"{name}:1") == f"{REPOSITORY}:base"  # kept for rollbacks
    rollouts = {r.placement.ecs_service_name: r for r in deploy.rollouts.all()}
    assert {r.status for r in rollouts.values()} == {RolloutStatus.DONE}
    assert rollouts["shop-web"].revision_before.endswith("shop-web:1")
    # Phase 2 started only once phase 1 was out.
    messages = list(deploy.events.values_list("message", flat=True))
    worker_out = next(i for i, m in enumerate(messages) if m.startswith("shop-worker on demo runs"))
    web_started = next(i for i, m in enumerate(messages) if m.startswith("shop-web on demo: "))
    assert worker_out < web_started
    assert rollouts["shop-web"].started_at >= rollouts["shop-worker"].finished_at


def test_a_failure_in_phase_two_rolls_both_phases_back_and_merges_nothing(
    shop,
    user,
    other_user,
    ecs,
    simulator,
    sent_tasks,
    drive,
    demo_remote,
    django_capture_on_commit_callbacks,
):
    main_before = remote_main(demo_remote)
    simulator.fail_new_tasks("demo", "shop-web")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        waiting = actions.queue_deploy(
            application=shop.slug,
            branch="feature/flaky-test",
            mode="merge_only",
            requester=other_user,
        )

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive, until={State.ROLLED_BACK})

    assert remote_main(demo_remote) == main_before
    for name in SERVICES:
        assert service_revision(ecs, name) == f"{name}:1"
    failure = why_it_moved(deploy, State.ROLLING_BACK)
    assert "of shop-web:2 stopped: OutOfMemoryError" in failure
    assert set(deploy.rollouts.values_list("status", flat=True)) == {RolloutStatus.ROLLED_BACK}
    # Highest phase first.
    messages = list(deploy.events.values_list("message", flat=True))
    web_back = next(i for i, m in enumerate(messages) if m.startswith("shop-web on demo: back"))
    worker_back = next(
        i for i, m in enumerate(messages) if m.startswith("shop-worker on demo: back")
    )
    assert web_back < worker_back
    assert Deploy.objects.get(pk=waiting.pk).state != State.QUEUED  # the slot moved on


def test_a_deployment_that_never_completes_times_out_and_rolls_back(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    simulator.stall("demo", "shop-worker")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    rollout_rounds(deploy, simulator, sent_tasks, drive, rounds=5, until={State.DEPLOYING})
    ServiceRollout.objects.filter(deploy=deploy).update(
        started_at=deploy.updated_at - timedelta(seconds=601)
    )

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    reason = why_it_moved(deploy, State.ROLLING_BACK)
    assert "did not complete within 600 s: 0 of 2 tasks running" in reason
    assert service_revision(ecs, "shop-worker") == "shop-worker:1"
    assert service_revision(ecs, "shop-web") == "shop-web:1"  # never touched


def test_a_target_away_past_the_phase_timeout_rolls_back_instead_of_waiting_forever(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks, monkeypatch
):
    simulator.stall("demo", "shop-worker")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    rollout_rounds(deploy, simulator, sent_tasks, drive, rounds=5, until={State.DEPLOYING})
    away = {"on": True}
    real_observe = ecs_module.EcsTarget.observe

    def observe(self, watches):
        if away["on"]:
            raise ecs_module.TargetUnavailable("ECS did not answer: connection refused")
        return real_observe(self, watches)

    monkeypatch.setattr(ecs_module.EcsTarget, "observe", observe)
    for _ in range(3):
        sent_tasks.release_later()
        drive()
    deploy.refresh_from_db()
    assert deploy.state == State.DEPLOYING  # passing trouble, within the phase timeout
    assert deploy.events.filter(message__contains="trying again").count() == 1
    ServiceRollout.objects.filter(deploy=deploy).update(
        started_at=deploy.updated_at - timedelta(seconds=601)
    )

    rollout_rounds(deploy, simulator, sent_tasks, drive, until={State.ROLLING_BACK})
    away["on"] = False
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    reason = why_it_moved(deploy, State.ROLLING_BACK)
    assert "ECS did not answer: connection refused, for longer than the phase timeout" in reason
    assert service_revision(ecs, "shop-worker") == "shop-worker:1"


def test_ecs_rolling_back_by_itself_is_a_failure_not_a_success(
    shop, user, ecs, simulator, sent_tasks, drive, demo_remote, django_capture_on_commit_callbacks
):
    main_before = remote_main(demo_remote)
    simulator.circuit_breaker_rollback("demo", "shop-web")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    assert remote_main(demo_remote) == main_before
    reason = why_it_moved(deploy, State.ROLLING_BACK)
    assert "of shop-web:2 stopped: exit code 1" in reason  # seen before ECS gave up


def test_a_service_ecs_rolled_back_quietly_is_not_reported_green(
    shop, user, ecs, simulator, sent_tasks, drive, monkeypatch, django_capture_on_commit_callbacks
):
    # The failed tasks are long gone (ECS forgets them) and the service is steady again, on the
    # old revision: "stable" alone would call that a success.
    monkeypatch.setattr(ecs_module.EcsTarget, "cluster_stopped_tasks", lambda self, *a: [])
    simulator.circuit_breaker_rollback("demo", "shop-web")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    reason = why_it_moved(deploy, State.ROLLING_BACK)
    assert "ECS gave up on deployment" in reason
    assert "rolled the service back by itself: it runs shop-web:1, not shop-web:2" in reason


def test_a_missing_image_fails_before_any_service_is_touched(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks, push=False)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.FAILED
    assert "is not in its registry: no service was touched" in deploy.events.last().message
    for name in SERVICES:
        assert service_revision(ecs, name) == f"{name}:1"
        families = ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]
        assert len(families) == 1  # no revision registered either


def throttle(monkeypatch, operation: str, times: int, code="ThrottlingException", status=400):
    """Make `operation` answer an AWS error `times` times, then let it through to moto."""
    calls = {"errors": 0, "all": 0}
    real_client = ecs_module.boto3.client

    def answer(request, **kwargs):
        calls["all"] += 1
        if calls["errors"] < times:
            calls["errors"] += 1
            body = f'{{"__type": "{code}", "message": "Rate exceeded"}}'.encode()
            return AWSResponse(request.url, status, {}, _Raw(body))
        return None

    def client(service_name, *args, **kwargs):
        made = real_client(service_name, *args, **kwargs)
        made.meta.events.register(f"before-send.{service_name}.{operation}", answer)
        return made

    monkeypatch.setattr(ecs_module.boto3, "client", client)
    return calls


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **kwargs):
        yield self.body


def test_throttling_is_retried_by_botocore(shop, ecs, monkeypatch, settings):
    settings.FC_AWS_MAX_ATTEMPTS = 4
    calls = throttle(monkeypatch, "DescribeServices", times=2)

    state = ecs_module.EcsTarget(REGION).describe_service("demo", "shop-web")

    assert state.task_definition.endswith("shop-web:1")
    assert calls["all"] == 3


def test_throttling_past_the_retries_is_passing_trouble(shop, ecs, monkeypatch):
    throttle(monkeypatch, "DescribeServices", times=100)

    with pytest.raises(ecs_module.TargetUnavailable, match="ThrottlingException"):
        ecs_module.EcsTarget(REGION).describe_service("demo", "shop-web")


def deny_updates(monkeypatch, *, after=0):
    """UpdateService answers AccessDenied once `after` updates went through."""
    real_update = ecs_module.EcsTarget.update_service
    calls = []

    def update_service(self, cluster, service, task_definition):
        calls.append(service)
        if len(calls) <= after:
            return real_update(self, cluster, service, task_definition)
        with ecs_module._aws(f"update service {service} on {cluster}"):
            error = {"Code": "AccessDeniedException", "Message": "not authorized to UpdateService"}
            raise ClientError({"Error": error}, "UpdateService")

    monkeypatch.setattr(ecs_module.EcsTarget, "update_service", update_service)
    return calls


def test_access_denied_fails_the_rollout_clearly_and_changes_nothing(
    shop, user, ecs, simulator, sent_tasks, drive, monkeypatch, django_capture_on_commit_callbacks
):
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    deny_updates(monkeypatch)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    # Nothing was updated, so the rollback finds every service on what it ran before.
    assert deploy.state == State.ROLLED_BACK
    assert "AWS denied update service shop-worker on demo" in why_it_moved(
        deploy, State.ROLLING_BACK
    )
    assert service_revision(ecs, "shop-worker") == "shop-worker:1"


def test_a_rollback_denied_by_aws_ends_rollback_failed_and_freezes_the_queue(
    shop, user, ecs, simulator, sent_tasks, drive, monkeypatch, django_capture_on_commit_callbacks
):
    simulator.fail_new_tasks("demo", "shop-web")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    # The two updates forward go through; every update back is denied.
    deny_updates(monkeypatch, after=2)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLBACK_FAILED
    final = why_it_moved(deploy, State.ROLLBACK_FAILED)
    assert "shop-web on demo: NOT rolled back (AWS denied update service shop-web" in final
    assert "shop-worker on demo: NOT rolled back" in final
    assert service_revision(ecs, "shop-worker") == "shop-worker:2"  # as the message says
    shop.refresh_from_db()
    assert shop.locked
    assert f"deploy #{deploy.pk}" in shop.lock_reason


def test_a_missing_service_is_reported_clearly(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    Placement.objects.filter(ecs_service_name="shop-worker").update(ecs_service_name="shop-gone")
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    assert "shop-gone" in why_it_moved(deploy, State.ROLLING_BACK)
    assert service_revision(ecs, "shop-web") == "shop-web:1"


def test_restoring_an_earlier_release_puts_back_its_revisions(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    first = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    first = rollout_rounds(first, simulator, sent_tasks, drive)
    second = queue_and_build(
        shop, user, sent_tasks, django_capture_on_commit_callbacks, branch="feature/flaky-test"
    )
    if second.state == State.BUILD_FAILED:  # the demo's flaky test: one more try
        with django_capture_on_commit_callbacks(execute=True):
            actions.retry_build(second, actor=user)
        while Deploy.objects.get(pk=second.pk).state == State.BUILDING:
            run_one(sent_tasks, django_capture_on_commit_callbacks)  # the image is there
    second = rollout_rounds(second, simulator, sent_tasks, drive)
    assert (first.state, second.state) == (State.SUCCEEDED, State.SUCCEEDED)
    assert service_revision(ecs, "shop-web") == "shop-web:3"

    with django_capture_on_commit_callbacks(execute=True):
        back = actions.restore(first, actor=user)
    back = rollout_rounds(back, simulator, sent_tasks, drive)

    assert back.state == State.SUCCEEDED
    assert back.mode == "restore" and back.restore_of == first
    for name in SERVICES:
        assert service_revision(ecs, name) == f"{name}:2"  # exactly what the first release ran
    assert back.events.filter(message__startswith="shop-web on demo: shop-web:3 -> shop-web:2")


def test_the_restore_button_and_api_queue_a_restore(
    shop, user, client, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    release = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    release = rollout_rounds(release, simulator, sent_tasks, drive)
    client.force_login(user)

    page = client.get(f"/deploys/{release.pk}/").content.decode()
    assert "Restore this release" in page
    assert "shop-web:2" in page  # the rollout table
    response = client.post(f"/deploys/{release.pk}/restore/")
    restoring = Deploy.objects.get(restore_of=release)
    assert response.status_code == 302 and response["Location"] == f"/deploys/{restoring.pk}/"
    assert restoring.mode == "restore"
    assert restoring.rollouts.count() == 2

    # The API's path, and its old name kept as an alias: the same view, the same answer.
    for path in ("restore", "rollback"):
        again = client.post(f"/api/deploys/{release.pk}/{path}/", content_type="application/json")
        assert again.status_code == 400, path
        assert "already queued or running" in again.json()["errors"]["deploy"][0]
    assert "Restore this release" not in client.get(f"/deploys/{restoring.pk}/").content.decode()


def test_a_release_that_did_not_succeed_cannot_be_restored(shop, user):
    failed = Deploy.objects.create(
        application=shop, branch="feature/x", requester=user, state=State.ROLLED_BACK
    )
    with pytest.raises(actions.DeployRequestError, match="did not succeed"):
        actions.restore(failed, actor=user)


def test_a_rollout_whose_worker_died_is_picked_up_and_nothing_is_done_twice(
    shop,
    user,
    ecs,
    simulator,
    sent_tasks,
    drive,
    monkeypatch,
    settings,
    django_capture_on_commit_callbacks,
):
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    updates = []
    real_update = ecs_module.EcsTarget.update_service

    def update_then_die_once(self, cluster, service, task_definition):
        deployment = real_update(self, cluster, service, task_definition)
        updates.append(service)
        if len(updates) == 1:
            raise SystemExit("worker killed after update_service, before recording it")
        return deployment

    monkeypatch.setattr(ecs_module.EcsTarget, "update_service", update_then_die_once)
    with pytest.raises(SystemExit):
        drive()
    sent_tasks.sent.clear()
    sent_tasks.later.clear()  # its next tick died with it

    # The safety net finds the quiet deploy and sends its tick again.
    Deploy.objects.filter(pk=deploy.pk).update(
        updated_at=deploy.updated_at - settings.FC_ROLLOUT_STALL_AFTER * 2,
        step_lease_until=None,
    )
    with django_capture_on_commit_callbacks(execute=True):
        resume_deploys()
    assert sent_tasks.sent == [("deploys.tasks.deploy_tick", deploy.pk)]
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.SUCCEEDED
    assert updates == ["shop-worker", "shop-web"]  # each service updated exactly once
    for name in SERVICES:
        families = ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]
        assert len(families) == 2  # one new revision each, not two


def test_a_second_tick_stands_down_while_one_is_at_work(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    assert ticks.take_lease(deploy)
    ran = []

    ticks.tick(deploy, ran.append)

    assert ran == []
    assert sent_tasks.later == []


def test_a_task_failing_during_the_soak_rolls_back(
    shop, user, ecs, simulator, sent_tasks, drive, demo_remote, django_capture_on_commit_callbacks
):
    Application.objects.filter(pk=shop.pk).update(soak_seconds=300)
    main_before = remote_main(demo_remote)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive, until={State.VERIFYING})
    running = ecs.list_tasks(cluster="demo", serviceName="shop-web")["taskArns"]

    # One of the new web tasks dies of OOM while the release soaks.
    simulator.fail_running_task(running[0])
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.ROLLED_BACK
    assert "OutOfMemoryError" in why_it_moved(deploy, State.ROLLING_BACK)
    assert remote_main(demo_remote) == main_before
    assert service_revision(ecs, "shop-web") == "shop-web:1"


def test_a_soak_that_passes_merges(
    shop, user, ecs, simulator, sent_tasks, drive, demo_remote, django_capture_on_commit_callbacks
):
    Application.objects.filter(pk=shop.pk).update(soak_seconds=300)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive, until={State.VERIFYING})
    for _ in range(3):
        simulator.advance(1)
        sent_tasks.release_later()
        drive()
    assert Deploy.objects.get(pk=deploy.pk).state == State.VERIFYING  # still soaking

    Deploy.objects.filter(pk=deploy.pk).update(verify_until=deploy.updated_at)
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.SUCCEEDED
    assert remote_main(demo_remote) == deploy.candidate_sha


def test_a_failing_health_check_rolls_back(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    import http.server
    import threading

    class Unhealthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        Service.objects.filter(name="shop-worker").update(
            health_check_url=f"http://127.0.0.1:{server.server_address[1]}/health"
        )
        deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)
        deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)
    finally:
        server.shutdown()

    assert deploy.state == State.ROLLED_BACK
    assert "the health check of shop-worker on demo answered 503" in why_it_moved(
        deploy, State.ROLLING_BACK
    )


def test_a_worker_dying_while_the_rollout_rows_are_made_leaves_none_not_some(
    shop, user, monkeypatch
):
    """All rows or none: a next tick that found some would take them for all and ship without
    the rest (a pool process killed there once shipped a dual deploy without its legacy side)."""
    from deploys.rollout import placements as p

    deploy = Deploy.objects.create(
        application=shop, branch="feature/x", requester=user, state=State.DEPLOYING
    )
    real = p.rollout_placements

    def dying(application):
        for n, placement in enumerate(real(application)):
            if n == 1:
                raise SystemExit("the worker died here")
            yield placement

    monkeypatch.setattr(p, "rollout_placements", dying)
    with pytest.raises(SystemExit):
        p.rows_of(deploy)
    assert ServiceRollout.objects.filter(deploy=deploy).count() == 0

    monkeypatch.setattr(p, "rollout_placements", real)
    assert len(p.rows_of(deploy)) == len(SERVICES)
    assert len(p.rows_of(deploy)) == len(SERVICES)  # made once, whoever asks again


# ------------------------------------------------------------------ the memory guard


def serve_revision(ecs, simulator, name: str, **container) -> str:
    """Make the service run a new revision of its family whose container is `container`."""
    arn = ecs.register_task_definition(
        family=name,
        networkMode="bridge",
        containerDefinitions=[
            {"name": "app", "image": f"{REPOSITORY}:base", "essential": True, **container}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.update_service(cluster="demo", service=name, taskDefinition=arn)
    simulator.advance(30)
    return arn.rsplit("/", 1)[-1]


def revisions(ecs) -> dict[str, tuple[str, int]]:
    """Each service's revision and how many revisions its family has."""
    return {
        name: (
            service_revision(ecs, name),
            len(ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"]),
        )
        for name in SERVICES
    }


@pytest.mark.parametrize(
    ("container", "said"),
    [
        ({"memoryReservation": 128}, "container app has no hard memory limit"),
        ({"memory": 256, "memoryReservation": 512}, "reserves 512 MiB"),
    ],
)
def test_a_revision_breaking_the_memory_guard_fails_before_any_service_is_touched(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks,
    container, said,
):  # fmt: skip
    serve_revision(ecs, simulator, "shop-web", **container)  # phase 2: phase 1 is fine
    before = revisions(ecs)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.FAILED
    message = why_it_moved(deploy, State.FAILED)
    assert message.startswith("the memory guard refused the revision: shop-web on demo")
    assert said in message and "no service was touched" in message
    assert revisions(ecs) == before  # no service updated, no revision registered


def test_tasks_that_do_not_fit_the_instances_memory_are_refused_with_the_numbers(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    ec2 = boto3.client("ec2", region_name=REGION)
    image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    host = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]
    ecs.register_container_instance(
        cluster="demo", instanceIdentityDocument=json.dumps({"instanceId": host["InstanceId"]})
    )
    serve_revision(ecs, simulator, "shop-web", memory=4096)  # two of them; 7482 MiB is left
    before = revisions(ecs)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.FAILED
    message = why_it_moved(deploy, State.FAILED)
    assert "shop-web on demo: 2 x 4096 MiB do not fit" in message
    assert f"{host['InstanceId']} 7482 MiB" in message and "room for 1" in message
    assert revisions(ecs) == before


def test_with_the_guard_set_to_warn_the_problem_is_said_and_the_deploy_goes_out(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks
):
    Application.objects.filter(pk=shop.pk).update(memory_guard="warn")
    serve_revision(ecs, simulator, "shop-web", memoryReservation=128)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.SUCCEEDED
    warnings = [e.message for e in deploy.events.all() if "memory guard" in e.message]
    assert len(warnings) == 1
    assert warnings[0].startswith("memory guard (a warning: rollout.memory_guard is warn)")
    assert "container app has no hard memory limit" in warnings[0]


def test_a_deploy_to_a_cluster_whose_every_agent_is_gone_waits_saying_why(
    shop, user, ecs, simulator, sent_tasks, drive, django_capture_on_commit_callbacks, settings
):
    from clusters.health.agents import watch_agents

    settings.FC_AGENT_GRACE_SECONDS = 0
    arn = simulator.add_container_instance("demo")
    simulator.set_agent_connected("demo", arn, False)
    cluster = Cluster.objects.get(name="demo")
    watch_agents(cluster)
    before = revisions(ecs)
    deploy = queue_and_build(shop, user, sent_tasks, django_capture_on_commit_callbacks)

    for _ in range(5):
        drive()
        simulator.advance(1)
        sent_tasks.release_later()
    deploy.refresh_from_db()

    assert deploy.state == State.DEPLOYING
    held = [e.message for e in deploy.events.all() if "held: every ECS agent" in e.message]
    assert len(held) == 1, held  # said once, not once a tick
    assert revisions(ecs) == before  # nothing started

    simulator.set_agent_connected("demo", arn, True)
    watch_agents(cluster)
    deploy = rollout_rounds(deploy, simulator, sent_tasks, drive)

    assert deploy.state == State.SUCCEEDED
