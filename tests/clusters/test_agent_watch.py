"""The agent watch (clusters/health/agents.py) against moto with the ECS simulator's container
instances: a disconnect past the grace is reported and drained, a reconnect closes the report
and undoes the drain, a cluster whose every agent is gone is not drained, and each report is
opened once and closed once however often the check runs or races with itself."""

import threading
from datetime import timedelta

import boto3
import pytest
from django.db import connection
from django.utils import timezone

from clusters.health.agents import watch_agents
from clusters.models import Cluster, ClusterReport, ReportKind
from clusters.targets.base import TargetUnavailable

REGION = "us-east-1"
GRACE = 300


@pytest.fixture
def ecs(simulator, settings):
    settings.FC_AGENT_GRACE_SECONDS = GRACE
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName="prod")
    return client


@pytest.fixture
def cluster(db):
    return Cluster.objects.create(name="prod", region=REGION, drain_disconnected=True)


def status_of(ecs, arn: str) -> str:
    described = ecs.describe_container_instances(cluster="prod", containerInstances=[arn])
    return described["containerInstances"][0]["status"]


def reports(kind=ReportKind.AGENT_DISCONNECTED):
    return list(ClusterReport.objects.filter(kind=kind).order_by("id"))


def test_a_disconnect_past_the_grace_is_reported_and_drained_and_a_reconnect_undoes_it(
    ecs, simulator, cluster
):
    arns = [simulator.add_container_instance("prod") for _ in range(2)]
    t0 = timezone.now()
    watch_agents(cluster, now=t0)
    simulator.set_agent_connected("prod", arns[0], False)

    watch_agents(cluster, now=t0 + timedelta(seconds=10))  # the disconnect is seen
    watch_agents(cluster, now=t0 + timedelta(seconds=10 + GRACE - 1))  # a short one: normal
    assert reports() == [] and status_of(ecs, arns[0]) == "ACTIVE"

    watched = watch_agents(cluster, now=t0 + timedelta(seconds=10 + GRACE))

    (report,) = reports()
    assert watched.opened == watched.drained == [report.subject]
    assert report.closed_at is None and report.drained
    assert "has been disconnected for 5 min" in report.message
    assert report.subject.startswith("i-")
    assert status_of(ecs, arns[0]) == "DRAINING"
    assert status_of(ecs, arns[1]) == "ACTIVE"
    kept = {s.arn: s.status for s in cluster.instances.all()}  # what the cluster page shows
    assert kept == {arns[0]: "DRAINING", arns[1]: "ACTIVE"}

    simulator.set_agent_connected("prod", arns[0], True)
    watched = watch_agents(cluster, now=t0 + timedelta(seconds=20 + GRACE))

    report.refresh_from_db()
    assert watched.closed == watched.undrained == [report.subject]
    assert report.closed_at is not None
    assert report.closed_why == "the agent reconnected; set back to ACTIVE"
    assert status_of(ecs, arns[0]) == "ACTIVE"
    assert cluster.instances.get(arn=arns[0]).status == "ACTIVE"


def test_a_cluster_that_does_not_allow_drains_is_only_reported(ecs, simulator, cluster):
    Cluster.objects.filter(pk=cluster.pk).update(drain_disconnected=False)
    arns = [simulator.add_container_instance("prod") for _ in range(2)]
    simulator.set_agent_connected("prod", arns[0], False)
    t0 = timezone.now()
    watch_agents(cluster, now=t0)

    watch_agents(cluster, now=t0 + timedelta(seconds=GRACE))

    (report,) = reports()
    assert not report.drained
    assert status_of(ecs, arns[0]) == "ACTIVE"


def test_a_cluster_whose_every_agent_is_gone_is_not_drained_to_nothing(ecs, simulator, cluster):
    arns = [simulator.add_container_instance("prod") for _ in range(2)]
    for arn in arns:
        simulator.set_agent_connected("prod", arn, False)
    t0 = timezone.now()
    watch_agents(cluster, now=t0)

    watch_agents(cluster, now=t0 + timedelta(seconds=GRACE))

    assert len(reports()) == 2 and not any(r.drained for r in reports())
    assert {status_of(ecs, arn) for arn in arns} == {"ACTIVE"}
    (whole,) = reports(ReportKind.ALL_AGENTS_DISCONNECTED)
    assert "every ECS agent of cluster prod (2 instances) is disconnected" in whole.message

    simulator.set_agent_connected("prod", arns[1], True)
    watch_agents(cluster, now=t0 + timedelta(seconds=GRACE + 10))

    whole.refresh_from_db()
    assert whole.closed_at is not None
    # The one still gone is drained now that there is somewhere for its tasks to go.
    assert status_of(ecs, arns[0]) == "DRAINING"


def test_each_report_is_opened_once_and_closed_once_however_often_the_check_runs(
    ecs, simulator, cluster
):
    arn = simulator.add_container_instance("prod")
    simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    t0 = timezone.now()
    watch_agents(cluster, now=t0)
    for second in range(5):
        watch_agents(cluster, now=t0 + timedelta(seconds=GRACE + second))
    simulator.set_agent_connected("prod", arn, True)
    for second in range(5):
        watch_agents(cluster, now=t0 + timedelta(seconds=GRACE + 10 + second))

    (report,) = reports()
    assert report.closed_at is not None


@pytest.mark.django_db(transaction=True)
def test_checks_that_race_open_one_report_between_them(ecs, simulator, cluster):
    arn = simulator.add_container_instance("prod")
    simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    t0 = timezone.now()
    watch_agents(cluster, now=t0)
    later = t0 + timedelta(seconds=GRACE)
    start = threading.Barrier(4)
    errors = []

    def check():
        try:
            start.wait(timeout=30)
            watch_agents(cluster, now=later)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    (report,) = reports()
    assert report.drained and status_of(ecs, arn) == "DRAINING"


def test_the_admin_lists_reports_and_instances_read_only(admin_client, cluster):
    ClusterReport.objects.create(
        cluster=cluster,
        kind=ReportKind.AGENT_DISCONNECTED,
        subject="i-0abc<script>",
        message="the ECS agent on i-0abc has been disconnected for 6 min",
    )

    listed = admin_client.get("/admin/clusters/clusterreport/")
    instances = admin_client.get("/admin/clusters/containerinstancestate/")

    assert listed.status_code == instances.status_code == 200
    assert "disconnected for 6 min" in listed.content.decode()
    assert "i-0abc<script>" not in listed.content.decode()  # escaped
    assert admin_client.get("/admin/clusters/clusterreport/add/").status_code == 403


def test_beat_sends_one_watch_per_cluster_and_a_watch_that_cannot_look_waits(
    ecs, simulator, cluster, settings, monkeypatch
):
    from clusters import tasks
    from clusters.health import watch

    box = Cluster.objects.create(name="box", kind="docker", docker_host="unix:///nowhere.sock")
    sent = []
    monkeypatch.setattr(tasks.watch_cluster, "delay", sent.append)
    tasks.watch_clusters()
    assert sorted(sent) == sorted([cluster.pk, box.pk])

    settings.FC_AGENT_GRACE_SECONDS = 0
    arn = simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    tasks.watch_cluster(cluster.pk)
    assert len(reports()) == 1

    def away(region, name):
        raise TargetUnavailable("ECS did not answer")

    monkeypatch.setattr(watch.ecs_instances, "container_instances", away)
    tasks.watch_cluster(cluster.pk)  # logged; what was seen before stands
    assert reports()[0].closed_at is None


# ------------------------------------------------------------- the reserved memory check


def test_an_instance_that_reserves_too_little_memory_is_reported_with_the_setting(
    ecs, simulator, cluster
):
    from clusters.health.reserved_memory import check_reserved_memory
    from clusters.targets.ecs_instances import container_instances

    # m5.large has 8192 MiB: one registers it all, one keeps 512 MiB for the system.
    tight = simulator.add_container_instance("prod", registered_memory=8192)
    simulator.add_container_instance("prod", registered_memory=8192 - 512)

    for _ in range(3):  # however often it runs: one report
        checked = check_reserved_memory(cluster, container_instances(REGION, "prod"))

    (report,) = reports(ReportKind.RESERVED_MEMORY)
    assert checked.opened == []  # opened by the first run only
    assert report.message == (
        f"{report.subject} (m5.large, 8192 MiB) registers 8192 MiB with ECS, so it keeps 0 MiB "
        "for the ECS agent and the Docker daemon, less than 256 MiB: set "
        "ECS_RESERVED_MEMORY=256 (or more) in /etc/ecs/ecs.config and restart the agent"
    )
    assert report.detail == {"total": 8192, "registered": 8192}

    ecs.deregister_container_instance(cluster="prod", containerInstance=tight, force=True)
    checked = check_reserved_memory(cluster, container_instances(REGION, "prod"))

    report.refresh_from_db()
    assert checked.closed == [report.subject]
    assert report.closed_why == "the instance is no longer in the cluster"


def test_the_watch_keeps_each_instances_figures_for_the_cluster_page(ecs, simulator, cluster):
    from clusters import tasks
    from clusters.models import ContainerInstanceState

    simulator.add_container_instance("prod", instance_type="m5.large", registered_memory=7680)

    tasks.watch_cluster(cluster.pk)

    (state,) = ContainerInstanceState.objects.all()
    assert (state.instance_type, state.status, state.agent_connected) == (
        "m5.large",
        "ACTIVE",
        True,
    )
    assert (state.type_memory, state.registered_memory, state.remaining_memory) == (
        8192,
        7680,
        7680,
    )
    assert state.reserved_memory == 512
    assert (state.registered_cpu, state.running_tasks) == (4096, 0)
