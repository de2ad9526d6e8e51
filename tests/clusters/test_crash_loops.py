"""Crash loops on ECS (clusters/health/crash_loops.py) against moto with the ECS simulator: a
revision that leaks is OOM-killed on one host, replaced on the next and killed there; the
check reports the loop once and stops it once (restored, or scaled to zero, or only
reported, as the application says), leaves it to a rollout that has the placement, and
closes the report when the loop is over."""

import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from clusters.health import crash_loops
from clusters.health.crash_loops import OomKill, check_crash_loops, find_loops, kills_on
from clusters.health.watch import watch_ecs
from clusters.models import Cluster, ClusterReport, Placement, ProcessType, ReportKind, Service
from deploys.models import Application, ServiceRollout
from deploys.states import State

from .releases import shipped

REGION = "us-east-1"
LEAK_AFTER = 30.0


@pytest.fixture
def ecs(simulator):
    simulator.leak_after_seconds = LEAK_AFTER
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName="prod")
    return client


@pytest.fixture
def hosts(ecs, simulator) -> list[str]:
    """Three container instances; tasks are placed on them in turn."""
    return [simulator.add_container_instance("prod") for _ in range(3)]


def revision(ecs, image: str) -> str:
    return ecs.register_task_definition(
        family="shop-worker",
        containerDefinitions=[{"name": "app", "image": image, "memory": 256, "essential": True}],
    )["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def world(db, ecs, simulator, hosts):
    """shop-worker ran good, then Fat Controller deployed leaky (a deploy that succeeded)."""
    good, leaky = revision(ecs, "shop:good"), revision(ecs, "shop:leaky")
    ecs.create_service(
        cluster="prod", serviceName="shop-worker", taskDefinition=good, desiredCount=1
    )
    simulator.advance(10)
    simulator.behave_by_image("shop:leaky", "leak")
    ecs.update_service(cluster="prod", service="shop-worker", taskDefinition=leaky)
    simulator.advance(10)  # out, healthy: the leak shows later
    app = Application.objects.create(slug="shop", name="Shop", git_remote_url="/nowhere.git")
    cluster = Cluster.objects.create(name="prod", region=REGION)
    service = Service.objects.create(
        application=app, name="worker", process_type=ProcessType.WORKER
    )
    placement = Placement.objects.create(
        service=service, cluster=cluster, ecs_service_name="shop-worker", container_name="app"
    )
    deploy = shipped(placement, good, leaky)
    return {"good": good, "leaky": leaky, "cluster": cluster, "app": app, "deploy": deploy}


def running(ecs) -> tuple[str, int]:
    (service,) = ecs.describe_services(cluster="prod", services=["shop-worker"])["services"]
    return service["taskDefinition"].rsplit("/", 1)[-1], service["desiredCount"]


def deployments(ecs) -> int:
    (service,) = ecs.describe_services(cluster="prod", services=["shop-worker"])["services"]
    return len([e for e in service["events"] if "has started" in e["message"]])


def loop_reports():
    return list(ClusterReport.objects.filter(kind=ReportKind.CRASH_LOOP).order_by("id"))


def check(cluster):
    return check_crash_loops(cluster, kills_on(cluster))


def test_one_oom_kill_is_not_a_loop_and_the_second_host_is(ecs, simulator, world):
    cluster = world["cluster"]
    simulator.advance(LEAK_AFTER)  # killed on the first host, replaced on the next
    assert check(cluster).opened == []
    assert [k.host for k in kills_on(cluster)] and running(ecs) == ("shop-worker:2", 1)

    simulator.advance(LEAK_AFTER)  # and killed there
    watch_ecs(cluster)  # the agent watch keeps the instances' EC2 ids, which the report names
    checked = check(cluster)

    (report,) = loop_reports()
    assert checked.opened == ["shop-worker"]
    assert len(set(report.detail["hosts"])) == 2
    assert report.detail["hosts"] == sorted({k.host for k in kills_on(cluster)})
    assert all(host.startswith("i-") for host in report.detail["hosts"])  # EC2 instance ids
    assert report.message.startswith("shop-worker at shop-worker:2 was OOM-killed on 2 hosts")
    assert report.detail["action"] == "restored"
    assert running(ecs) == ("shop-worker:1", 1)  # the revision before it, put back


@pytest.mark.django_db(transaction=True)
def test_a_loop_is_stopped_once_however_often_the_check_runs_or_races(ecs, simulator, world):
    cluster = world["cluster"]
    simulator.advance(2 * LEAK_AFTER)
    kills = kills_on(cluster)
    updates = []
    real = crash_loops.ecs_target.EcsTarget.restore

    def counted(self, *args, **kwargs):
        updates.append(args)
        return real(self, *args, **kwargs)

    crash_loops.ecs_target.EcsTarget.restore = counted
    errors = []

    def run():
        try:
            check_crash_loops(cluster, kills)
        except Exception as exc:  # noqa: BLE001 - a race's error fails the test below
            errors.append(exc)
        finally:
            connection.close()

    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for _ in range(3):
            check_crash_loops(cluster, kills)
    finally:
        crash_loops.ecs_target.EcsTarget.restore = real
    assert errors == []
    assert len(updates) == 1  # restored once
    (report,) = loop_reports()  # reported once
    assert report.closed_at is None and report.detail["action"] == "restored"


def test_scale_to_zero_stops_the_service_and_the_report_stays_open_until_it_runs_again(
    ecs, simulator, world, settings
):
    world["app"].crash_loop = "scale_to_zero"
    world["app"].save()
    cluster = world["cluster"]
    simulator.advance(2 * LEAK_AFTER)
    check(cluster)
    assert running(ecs) == ("shop-worker:2", 0)
    (report,) = loop_reports()
    assert report.detail["action"] == "scaled_to_zero"

    settings.FC_CRASH_LOOP_WINDOW_SECONDS = 1  # the kills are out of the window
    later = timezone.now() + timedelta(hours=1)  # the simulator's clock runs ahead
    check_crash_loops(cluster, kills_on(cluster), now=later)
    report.refresh_from_db()
    assert report.closed_at is None  # still down on purpose: the report says why

    ecs.update_service(
        cluster="prod", service="shop-worker", taskDefinition=world["good"], desiredCount=1
    )
    check_crash_loops(cluster, kills_on(cluster), now=later)
    report.refresh_from_db()
    assert report.closed_why == "no OOM kills on 2 hosts in the last 1 s"


def test_report_only_changes_nothing(ecs, simulator, world):
    world["app"].crash_loop = "report"
    world["app"].save()
    simulator.advance(2 * LEAK_AFTER)
    check(world["cluster"])
    (report,) = loop_reports()
    assert report.detail["action"] == "reported"
    assert "crash_loop is report" in report.detail["said"]
    assert running(ecs) == ("shop-worker:2", 1)


def test_a_loop_during_a_rollout_is_left_to_the_rollout_and_acted_on_after_it(
    ecs, simulator, world
):
    deploy = world["deploy"]
    deploy.state = State.DEPLOYING
    deploy.save()
    simulator.advance(2 * LEAK_AFTER)
    check(world["cluster"])
    (report,) = loop_reports()
    assert report.detail["action"] == ""
    assert (
        report.detail["said"]
        == f"deploy #{deploy.pk} is rolling out to it: the rollout restores it"
    )
    assert running(ecs) == ("shop-worker:2", 1)

    deploy.state = State.SUCCEEDED  # it ended, and the loop goes on: now the watch stops it
    deploy.save()
    check(world["cluster"])
    report.refresh_from_db()
    assert report.detail["action"] == "restored"
    assert running(ecs) == ("shop-worker:1", 1)


def test_a_placement_that_moved_on_is_not_touched_and_the_report_closes_after_the_window(
    ecs, simulator, world, settings
):
    simulator.advance(2 * LEAK_AFTER)
    ecs.update_service(cluster="prod", service="shop-worker", taskDefinition=world["good"])
    check(world["cluster"])
    (report,) = loop_reports()
    assert report.detail["action"] == "reported"
    assert report.detail["said"] == "it runs another revision now: nothing to stop"

    settings.FC_CRASH_LOOP_WINDOW_SECONDS = 60
    check_crash_loops(
        world["cluster"], kills_on(world["cluster"]), now=timezone.now() + timedelta(hours=1)
    )
    report.refresh_from_db()
    assert report.closed_why == "no OOM kills on 2 hosts in the last 1 min"


def test_a_revision_fat_controller_did_not_deploy_is_reported_only(ecs, simulator, world):
    ServiceRollout.objects.all().delete()
    simulator.advance(2 * LEAK_AFTER)
    check(world["cluster"])
    (report,) = loop_reports()
    assert report.detail["action"] == "reported"
    assert "no revision before it is known" in report.detail["said"]
    assert running(ecs) == ("shop-worker:2", 1)  # never scaled instead


# ---------------------------------------------------------------- what makes a loop

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)

kill_lists = st.lists(
    st.builds(
        OomKill,
        subject=st.sampled_from(["web", "worker"]),
        revision=st.sampled_from(["web:1", "web:2"]),
        host=st.sampled_from(["i-1", "i-2", "i-3"]),
        at=st.integers(min_value=0, max_value=3600).map(lambda s: NOW - timedelta(seconds=s)),
    ),
    max_size=12,
)


@given(kill_lists)
def test_a_loop_is_a_revision_killed_on_two_hosts_within_the_window(kills):
    loops = find_loops(kills, now=NOW, window=WINDOW)
    for subject, loop in loops.items():
        assert loop.subject == subject
        assert len(loop.hosts) >= 2
        assert all(k.subject == subject and k.revision == loop.revision for k in loop.kills)
        assert all(k.at >= NOW - WINDOW for k in loop.kills)
    for subject in {k.subject for k in kills} - set(loops):
        for revision in {k.revision for k in kills}:
            hosts = {
                k.host
                for k in kills
                if (k.subject, k.revision) == (subject, revision) and NOW - k.at <= WINDOW
            }
            assert len(hosts) < 2


def test_beat_sends_one_crash_loop_check_per_cluster_and_one_that_cannot_look_waits(
    ecs, simulator, world, monkeypatch, caplog
):
    from clusters import tasks
    from clusters.targets.base import TargetUnavailable

    box = Cluster.objects.create(name="box", kind="docker", docker_host="unix:///nowhere.sock")
    sent = []
    monkeypatch.setattr(tasks.check_crash_loops, "delay", sent.append)
    tasks.watch_crash_loops()
    assert sorted(sent) == sorted([world["cluster"].pk, box.pk])

    simulator.advance(2 * LEAK_AFTER)
    tasks.check_crash_loops(world["cluster"].pk)
    assert loop_reports()[0].detail["action"] == "restored"

    def away(cluster):
        raise TargetUnavailable("ECS did not answer")

    monkeypatch.setattr(crash_loops, "_ecs_kills", away)
    tasks.check_crash_loops(world["cluster"].pk)  # logged; the report stands
    assert "could not look: ECS did not answer" in caplog.text
    assert loop_reports()[0].closed_at is None
