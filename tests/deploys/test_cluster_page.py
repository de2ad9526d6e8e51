"""The cluster page (/clusters/<name>/) and the dashboard's badge for an application whose
clusters have open reports."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clusters.models import (
    Cluster,
    ClusterReport,
    ContainerInstanceState,
    Placement,
    ProcessType,
    ReportKind,
    Service,
)
from deploys.models import Application


@pytest.fixture
def prod(db):
    return Cluster.objects.create(name="prod", region="eu-west-1", drain_disconnected=True)


def placed(application, cluster, name="web"):
    service = Service.objects.create(
        application=application, name=name, process_type=ProcessType.WEB
    )
    return Placement.objects.create(service=service, cluster=cluster, ecs_service_name=name)


def test_the_page_puts_open_reports_first_then_instances_then_closed_ones(
    logged_in, prod, application
):
    placed(application, prod)
    since = timezone.now() - timedelta(minutes=7)
    ContainerInstanceState.objects.create(
        cluster=prod,
        arn="arn:aws:ecs:eu-west-1:1:container-instance/prod/abc",
        ec2_instance_id="i-0abc",
        status="DRAINING",
        agent_connected=False,
        since=since,
        instance_type="m5.large",
        type_memory=8192,
        registered_memory=7680,
        remaining_memory=7168,
        registered_cpu=2048,
        remaining_cpu=1536,
        running_tasks=2,
    )
    ClusterReport.objects.create(
        cluster=prod,
        kind=ReportKind.AGENT_DISCONNECTED,
        subject="i-0abc",
        message="the ECS agent on i-0abc has been disconnected for 7 min <script>x</script>",
        drained=True,
    )
    ClusterReport.objects.create(
        cluster=prod,
        kind=ReportKind.RESERVED_MEMORY,
        subject="i-0old",
        message="i-0old keeps 0 MiB",
        opened_at=since,
        closed_at=timezone.now(),
        closed_why="the instance is no longer in the cluster",
    )

    response = logged_in.get("/clusters/prod/")

    assert response.status_code == 200
    html = response.content.decode()
    open_at, table_at, closed_at = (
        html.index("Open reports"),
        html.index("Container instances"),
        html.index("Closed reports"),
    )
    assert open_at < html.index("disconnected for 7 min") < table_at < closed_at
    assert html.index("i-0old keeps 0 MiB") > closed_at
    assert "<script>x</script>" not in html and "&lt;script&gt;" in html
    assert "drained by Fat Controller" in html
    assert "disconnected since" in html
    assert "7680 · 512 · 7168" in html  # registered, reserved (8192 - 7680), left
    assert "2048 · 1536" in html
    assert "the instance is no longer in the cluster" in html
    assert 'href="/applications/demo-shop/"' in html


def test_a_crash_loop_report_says_what_was_done_about_it(logged_in, prod, application):
    ClusterReport.objects.create(
        cluster=prod,
        kind=ReportKind.CRASH_LOOP,
        subject="shop-worker",
        message="shop-worker at shop-worker:2 was OOM-killed on 2 hosts (i-1, i-2)",
        detail={"action": "restored", "said": "restored shop-worker:1 <b>before</b>"},
    )
    html = logged_in.get("/clusters/prod/").content.decode()
    assert "crash loop: OOM-killed on host after host" in html
    assert "restored shop-worker:1 &lt;b&gt;before&lt;/b&gt;" in html


def test_an_unknown_cluster_is_a_404_and_the_page_needs_a_login(client, logged_in, prod):
    assert logged_in.get("/clusters/nowhere/").status_code == 404
    logged_in.logout()
    response = client.get("/clusters/prod/")
    assert response.status_code == 302 and "/login" in response["Location"]


def test_the_dashboard_badges_an_application_whose_clusters_have_open_reports(
    logged_in, prod, application
):
    quiet = Application.objects.create(
        slug="quiet", name="Quiet", git_remote_url="/nowhere.git", default_branch="main"
    )
    elsewhere = Cluster.objects.create(name="elsewhere")
    placed(application, prod)
    placed(quiet, elsewhere)
    for subject in ("i-1", "i-2"):
        ClusterReport.objects.create(
            cluster=prod, kind=ReportKind.AGENT_DISCONNECTED, subject=subject, message="gone"
        )
    ClusterReport.objects.create(
        cluster=elsewhere,
        kind=ReportKind.AGENT_DISCONNECTED,
        subject="i-3",
        message="gone",
        closed_at=timezone.now(),
    )

    html = logged_in.get("/").content.decode()

    assert html.count("badge health-badge") == 1  # quiet has only a closed one
    assert 'href="/clusters/prod/">cluster prod: 2 open reports</a>' in html
