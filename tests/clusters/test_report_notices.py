"""Cluster reports told to chat (clusters/health/notices.py): when the agent watch opens a
report and when it closes it, each application with a placement on the cluster whose webhook
is set gets one message, posted to a real local HTTP stand-in; retried on a 500; the URL
never logged."""

import logging

import boto3
import pytest

from clusters import tasks
from clusters.health.agents import watch_agents
from clusters.models import Cluster, ClusterReport, Placement, ProcessType, Service
from deploys.models import Application
from tests.deploys.test_notify import TOKEN, SlackStandin

REGION = "us-east-1"


@pytest.fixture
def slack(monkeypatch):
    with SlackStandin() as standin:
        monkeypatch.setenv("FC_WEBHOOK_URL_SHOP", standin.url)
        yield standin


@pytest.fixture
def world(db, simulator, settings):
    settings.FC_AGENT_GRACE_SECONDS = 0
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName="prod")
    cluster = Cluster.objects.create(name="prod", region=REGION, drain_disconnected=True)
    for slug in ("shop", "blog"):  # both on prod; only shop has a webhook
        app = Application.objects.create(slug=slug, name=slug.title(), git_remote_url="/x.git")
        service = Service.objects.create(application=app, name="web", process_type=ProcessType.WEB)
        Placement.objects.create(service=service, cluster=cluster, ecs_service_name=f"{slug}-web")
    elsewhere = Application.objects.create(slug="other", name="Other", git_remote_url="/x.git")
    Service.objects.create(application=elsewhere, name="web", process_type=ProcessType.WEB)
    return cluster


def run_notices(sent_tasks) -> None:
    """Post the queued notices as a worker would (eager retries run at once)."""
    while sent_tasks.notices:
        # throw=False: with throw=True an eager Retry escapes instead of running the retry.
        result = tasks.post_report_notice.apply(args=sent_tasks.notices.pop(0), throw=False)
        assert result.state == "SUCCESS", result.traceback


def test_a_report_opened_and_closed_tells_each_application_on_the_cluster_once(
    world, simulator, slack, sent_tasks, django_capture_on_commit_callbacks, caplog
):
    caplog.set_level(logging.INFO)
    simulator.add_container_instance("prod")  # still connected: the cluster is not all gone
    arn = simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    with django_capture_on_commit_callbacks(execute=True):
        watch_agents(world)
        watch_agents(world)  # the same report: nothing more told
    report = ClusterReport.objects.get()
    assert [n[1:] for n in sent_tasks.notices] == [("shop", True)]  # blog has no webhook
    run_notices(sent_tasks)
    (opened,) = slack.texts
    assert opened.startswith(
        f":rotating_light: *cluster prod*: ECS agent disconnected on {report.subject}"
    )
    assert "it is drained so its tasks move" in opened

    simulator.set_agent_connected("prod", arn, True)
    with django_capture_on_commit_callbacks(execute=True):
        watch_agents(world)
    run_notices(sent_tasks)
    assert len(slack.texts) == 2
    assert slack.texts[1].endswith(": over\nthe agent reconnected; set back to ACTIVE")
    assert TOKEN not in caplog.text
    assert f"cluster report #{report.pk}: webhook of shop told (closed)" in caplog.text


def test_a_notice_the_webhook_did_not_take_is_retried(
    world, simulator, slack, sent_tasks, django_capture_on_commit_callbacks, caplog
):
    slack.answers = ["500"]
    simulator.add_container_instance("prod")  # still connected: the cluster is not all gone
    arn = simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    with django_capture_on_commit_callbacks(execute=True):
        watch_agents(world)
    run_notices(sent_tasks)
    assert len(slack.received) == 2  # the 500, then the retry that was taken
    assert slack.texts[0] == slack.texts[1]
    assert TOKEN not in caplog.text


def test_no_webhook_set_queues_nothing(
    world, simulator, sent_tasks, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.delenv("FC_WEBHOOK_URL_SHOP", raising=False)
    simulator.add_container_instance("prod")  # still connected: the cluster is not all gone
    arn = simulator.add_container_instance("prod")
    simulator.set_agent_connected("prod", arn, False)
    with django_capture_on_commit_callbacks(execute=True):
        watch_agents(world)
    assert ClusterReport.objects.count() == 1
    assert sent_tasks.notices == []
