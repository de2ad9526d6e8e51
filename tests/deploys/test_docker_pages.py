"""The pages and the API for Docker placements: the deploy page's container batches (from the
rollout row's detail, as the target writes it), the API's `batches`, and the application
page's containers as the engine says now, or why the engine did not answer."""

import re

import pytest
from django.urls import reverse

from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, ProcessType, Service
from deploys.models import Application, Deploy, ServiceRollout
from deploys.states import Mode, State
from tests.pages import html_of

HOSTILE = 'fc-<script>alert("x")</script>-1'


@pytest.fixture
def shop(db):
    return Application.objects.create(
        slug="shop", name="Shop", git_remote_url="/nowhere.git", default_branch="main"
    )


def docker_placement(application, host="unix:///nowhere/docker.sock", name="box-1", service="web"):
    cluster, _ = Cluster.objects.get_or_create(
        name=name, defaults={"kind": ClusterKind.DOCKER, "docker_host": host}
    )
    web, _ = Service.objects.get_or_create(
        application=application, name=service, defaults={"process_type": ProcessType.WEB}
    )
    return Placement.objects.create(
        service=web,
        cluster=cluster,
        kind=PlacementKind.DOCKER,
        docker_config={"replicas": 2, "memory": "32m"},
    )


def deploy_with(application, user, placement, status, detail, message="") -> Deploy:
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/x",
        mode=Mode.DEPLOY,
        requester=user,
        state=State.DEPLOYING,
    )
    ServiceRollout.objects.create(
        deploy=deploy,
        placement=placement,
        phase=1,
        status=status,
        revision_before="0123456789ab",
        revision_made="ba9876543210",
        running_count=2,
        desired_count=2,
        detail=detail,
        message=message,
    )
    return deploy


def rollout_part(client, deploy) -> str:
    response = client.get(reverse("deploy", args=[deploy.pk]))
    assert response.status_code == 200
    page = html_of(response)
    return page[page.index("<h2>Rollout</h2>") :]


def batch_items(html: str) -> list[str]:
    """Each batch's line, tags stripped and spaces squeezed."""
    items = re.findall(r'<li class="docker-batch[^"]*">(.*?)</li>', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", "", item).split()) for item in items]


# What the target writes (clusters/targets/docker_replace.py), for a replace of two replicas
# in two batches of one, then a third deploy's first container killed for its memory.
REPLACED = {
    "before": {"revision": "0123456789ab", "image": "shop:1", "config": None, "replicas": 2},
    "events": [
        {"batch": 1, "containers": ["fc-shop-web-1-ba98-1"], "event": "started"},
        {"batch": 1, "containers": ["fc-shop-web-1-ba98-1"], "event": "healthy"},
        {"batch": 1, "containers": ["fc-shop-web-1-0123-2"], "event": "replaced"},
        {"batch": 2, "containers": ["fc-shop-web-1-ba98-2"], "event": "started"},
        {"batch": 2, "containers": ["fc-shop-web-1-ba98-2"], "event": "healthy"},
        {"batch": 2, "containers": ["fc-shop-web-1-0123-1"], "event": "replaced"},
    ],
}
OOM = {
    "events": [
        {
            "batch": 1,
            "containers": ["fc-shop-web-1-ba98-1", "fc-shop-web-1-ba98-2"],
            "event": "started",
        },
        {
            "batch": 1,
            "containers": ["fc-shop-web-1-ba98-1"],
            "event": "oom_killed",
            "exit_code": 137,
        },
    ]
}


def test_the_deploy_page_says_where_and_what_each_batch_did(logged_in, user, shop):
    placement = docker_placement(shop)
    deploy = deploy_with(shop, user, placement, "done", REPLACED)
    html = rollout_part(logged_in, deploy)
    assert "(web on docker host box-1)" in html
    assert batch_items(html) == [
        "batch 1: started fc-shop-web-1-ba98-1 · healthy fc-shop-web-1-ba98-1 · "
        "replaced the old ones fc-shop-web-1-0123-2",
        "batch 2: started fc-shop-web-1-ba98-2 · healthy fc-shop-web-1-ba98-2 · "
        "replaced the old ones fc-shop-web-1-0123-1",
    ]
    assert "failure" not in html[html.index("docker-batches") :]


def test_an_oom_kill_is_shown_in_the_failure_colour(logged_in, user, shop):
    placement = docker_placement(shop)
    deploy = deploy_with(shop, user, placement, "failed", OOM, message="OOM-killed")
    html = rollout_part(logged_in, deploy)
    [item] = batch_items(html)
    assert item == (
        "batch 1: started fc-shop-web-1-ba98-1, fc-shop-web-1-ba98-2 · "
        "OOM-killed (exit 137) fc-shop-web-1-ba98-1"
    )
    assert re.search(
        r'<span class="docker-event event-oom_killed failure">OOM-killed \(exit 137\)', html
    )
    assert '<li class="docker-batch failed">' in html


def test_hostile_container_names_are_escaped(logged_in, user, shop, api):
    placement = docker_placement(shop, name="<b>box</b>", service="<i>web</i>")
    detail = {"events": [{"batch": 1, "containers": [HOSTILE], "event": "<img src=x>"}]}
    deploy = deploy_with(shop, user, placement, "updating", detail)
    html = rollout_part(logged_in, deploy)
    assert "<script>" not in html and "<img" not in html and "<b>box" not in html
    assert "fc-&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;-1" in html
    assert "&lt;i&gt;web&lt;/i&gt; on docker host &lt;b&gt;box&lt;/b&gt;" in html
    [rollout] = api.get(f"/api/deploys/{deploy.pk}/").json()["rollouts"]
    assert rollout["batches"] == [
        {
            "batch": 1,
            "events": [{"event": "<img src=x>", "containers": [HOSTILE], "exit_code": None}],
        }
    ]


@pytest.mark.parametrize(
    "detail",
    [
        {},
        [],
        "events",
        {"events": None},
        {"events": "started"},
        {"events": {"batch": 1}},
        {"events": [None, 3, "x", [], {"batch": 1}, {"event": 7}, {"event": ""}]},
        {"events": [{"batch": {"x": 1}, "containers": {"a": 1}, "event": "started"}]},
        {
            "events": [
                {"batch": True, "containers": [1, None, ""], "event": "healthy", "exit_code": "x"}
            ]
        },
    ],
)
def test_odd_details_never_make_a_500(logged_in, user, shop, api, detail):
    placement = docker_placement(shop)
    deploy = deploy_with(shop, user, placement, "updating", detail)
    html = rollout_part(logged_in, deploy)
    assert "(web on docker host box-1)" in html
    [rollout] = api.get(f"/api/deploys/{deploy.pk}/").json()["rollouts"]
    assert isinstance(rollout["batches"], list)
    for batch in rollout["batches"]:  # what could be read is shown; the rest is left out
        assert batch["batch"] is None
        assert all(isinstance(c, str) and c for e in batch["events"] for c in e["containers"])


def test_the_api_gives_the_batches_of_docker_rows_and_null_for_others(api, user, shop):
    placement = docker_placement(shop)
    deploy = deploy_with(shop, user, placement, "failed", OOM)
    ecs = Placement.objects.create(
        service=placement.service,
        cluster=Cluster.objects.create(name="demo"),
        ecs_service_name="shop-web",
    )
    ServiceRollout.objects.create(deploy=deploy, placement=ecs, phase=1, status="done")
    rollouts = {r["kind"]: r for r in api.get(f"/api/deploys/{deploy.pk}/").json()["rollouts"]}
    assert rollouts["ecs"]["batches"] is None
    assert rollouts["docker"]["batches"] == [
        {
            "batch": 1,
            "events": [
                {
                    "event": "started",
                    "containers": ["fc-shop-web-1-ba98-1", "fc-shop-web-1-ba98-2"],
                    "exit_code": None,
                },
                {"event": "oom_killed", "containers": ["fc-shop-web-1-ba98-1"], "exit_code": 137},
            ],
        }
    ]
