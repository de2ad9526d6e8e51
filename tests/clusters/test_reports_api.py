"""The reports API: a cluster's reports (GET /api/clusters/<name>/reports/) and every open one
(GET /api/reports/), filtered by ?state=, login required, bad filters a 400."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clusters.models import Cluster, ClusterReport, ReportKind


@pytest.fixture
def reports(db):
    prod = Cluster.objects.create(name="prod")
    other = Cluster.objects.create(name="other")
    now = timezone.now()
    made = {
        "gone": ClusterReport.objects.create(
            cluster=prod,
            kind=ReportKind.AGENT_DISCONNECTED,
            subject="i-0abc",
            message="the ECS agent on i-0abc <b>is</b> gone",
            drained=True,
            opened_at=now - timedelta(minutes=5),
        ),
        "old": ClusterReport.objects.create(
            cluster=prod,
            kind=ReportKind.RESERVED_MEMORY,
            subject="i-0old",
            message="i-0old keeps 0 MiB",
            opened_at=now - timedelta(hours=2),
            closed_at=now - timedelta(hours=1),
            closed_why="it keeps 512 MiB now",
        ),
        "loop": ClusterReport.objects.create(
            cluster=other,
            kind=ReportKind.CRASH_LOOP,
            subject="shop-worker",
            message="shop-worker at shop-worker:2 was OOM-killed on 2 hosts",
            detail={"action": "restored", "hosts": ["i-1", "i-2"]},
            opened_at=now - timedelta(minutes=1),
        ),
    }
    return made


def test_a_clusters_reports_open_first_then_closed(api, reports):
    answer = api.get("/api/clusters/prod/reports/")
    assert answer.status_code == 200
    listed = answer.json()["reports"]
    assert [r["id"] for r in listed] == [reports["gone"].pk, reports["old"].pk]
    gone = listed[0]
    assert gone["cluster"] == "prod" and gone["kind"] == "agent_disconnected"
    assert gone["kind_display"] == "ECS agent disconnected"
    assert gone["message"] == "the ECS agent on i-0abc <b>is</b> gone"  # JSON, as written
    assert gone["drained"] is True and gone["closed_at"] is None
    assert listed[1]["closed_why"] == "it keeps 512 MiB now"

    closed = api.get("/api/clusters/prod/reports/?state=closed").json()["reports"]
    assert [r["id"] for r in closed] == [reports["old"].pk]


def test_every_open_report_across_clusters(api, reports):
    listed = api.get("/api/reports/").json()["reports"]
    assert [r["id"] for r in listed] == [reports["loop"].pk, reports["gone"].pk]
    assert listed[0]["detail"] == {"action": "restored", "hosts": ["i-1", "i-2"]}
    everything = api.get("/api/reports/?state=all").json()["reports"]
    assert len(everything) == 3


def test_a_bad_filter_is_a_400_an_unknown_cluster_a_404_and_a_login_is_needed(api, client, reports):
    answer = api.get("/api/reports/?state=shut")
    assert answer.status_code == 400
    assert answer.json() == {"errors": {"state": ["must be one of open, closed, all"]}}
    assert api.get("/api/clusters/nowhere/reports/").status_code == 404
    assert client.get("/api/reports/").status_code in (401, 403)
    assert client.get("/api/clusters/prod/reports/").status_code in (401, 403)
