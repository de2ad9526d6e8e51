"""The pages and the API for Docker placements: the deploy page's container batches (from the
rollout row's detail, as the target writes it), the API's `batches`, and the application
page's containers as the engine says now, or why the engine did not answer."""

import os
import re
import shutil
import socket
import tempfile
import time
import uuid

import pytest
from django.urls import reverse

from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, ProcessType, Service
from clusters.targets.docker_replicas import APPLICATION, PLACEMENT, REPLICA, REVISION, SERVICE
from deploys.models import Application, Deploy, ServiceRollout
from deploys.states import Mode, State
from devtools import docker_images
from tests.clusters import conftest as target_fixtures
from tests.pages import html_of
from tests.waiting import wait_until

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


# --- the application page: the containers as the engine says now -----------------------------


def app_page(client, application) -> str:
    response = client.get(reverse("application", args=[application.slug]))
    assert response.status_code == 200
    return html_of(response)


def placement_row(html: str, placement) -> str:
    match = re.search(
        rf'<tr class="placement [^"]*" id="placement-{placement.pk}">(.*?)</tr>', html, re.S
    )
    assert match, f"no row for placement {placement.pk}"
    return match.group(1)


def container_items(row: str) -> list[str]:
    items = re.findall(r'<li class="container [^"]*">(.*?)</li>', row, re.S)
    return [" ".join(re.sub(r"<[^>]+>", "", item).split()) for item in items]


engine = target_fixtures.engine  # a client of the test engine that removes what was left


def run_labelled(client, image, placement, revision, replica, command, **more):
    """A container labelled as the Docker target labels its own (docker_replace.Step._create)."""
    return client.containers.run(
        image,
        command,
        name=f"fc-shop-web-{placement.pk}-{replica}-{uuid.uuid4().hex[:6]}",
        network_mode="none",
        detach=True,
        labels={
            APPLICATION: "shop",
            SERVICE: "web",
            PLACEMENT: str(placement.pk),
            REVISION: revision,
            REPLICA: str(replica),
        },
        **more,
    )


@pytest.mark.docker
def test_the_application_page_lists_the_containers_the_engine_runs(
    logged_in, shop, engine, docker_engine
):
    image = docker_images.base_image(engine)
    placement = docker_placement(shop, host=docker_engine.host)
    other = docker_placement(shop, host=docker_engine.host, service="worker")
    check = {
        "test": ["CMD", "true"],
        "interval": 200_000_000,
        "timeout": 1_000_000_000,
        "retries": 1,
    }
    first = run_labelled(
        engine, image, placement, "ba9876543210", 1, ["sleep", "300"], healthcheck=check
    )
    second = run_labelled(engine, image, placement, "<script>x</script>", 2, ["false"])
    run_labelled(engine, image, other, "0000000000aa", 1, ["sleep", "300"])
    unlabelled = engine.containers.run(image, ["sleep", "300"], network_mode="none", detach=True)
    try:

        def settled():
            row = placement_row(app_page(logged_in, shop), placement)
            items = container_items(row)
            return row if items and "(healthy)" in items[0] and "exited" in items[-1] else None

        row = wait_until(settled, timeout=30, what="the containers healthy and exited")
    finally:
        unlabelled.remove(force=True)
    assert "Docker host" in row and "box-1" in row
    assert container_items(row) == [
        f"{first.name} · ba9876543210 · running (healthy)",
        f"{second.name} · &lt;script&gt;x&lt;/script&gt; · exited",
    ]
    assert "<script>x" not in row and "&lt;script&gt;x&lt;/script&gt;" in row
    assert "0000000000aa" not in row and unlabelled.name not in row
    assert "0000000000aa" in placement_row(app_page(logged_in, shop), other)


@pytest.fixture
def silent_engine():
    """A unix socket that takes connections and never answers: an engine that hangs."""
    folder = tempfile.mkdtemp(prefix="fc-silent-", dir="/tmp")  # a socket path must be short
    path = os.path.join(folder, "docker.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    yield f"unix://{path}"
    server.close()
    shutil.rmtree(folder, ignore_errors=True)


def test_engines_that_do_not_answer_cost_only_their_rows(logged_in, shop, settings, silent_engine):
    settings.FC_DOCKER_PAGE_TIMEOUT = 0.5
    missing = docker_placement(shop, host="unix:///nowhere/fc-no-such/docker.sock", name="box-9")
    hanging = docker_placement(shop, host=silent_engine, name="box-silent", service="worker")
    ecs = Placement.objects.create(
        service=missing.service,
        cluster=Cluster.objects.create(name="demo"),
        ecs_service_name="shop-web-ecs",
    )
    began = time.monotonic()
    html = app_page(logged_in, shop)
    took = time.monotonic() - began
    # The hanging engine is given up on at the page's timeout (2 x 0.5 s + 0.5 s), not the
    # rollout's 30 s; the margin is for a busy machine.
    assert took < 10, f"the page took {took:.1f} s"
    assert "The Docker host box-9 did not answer: " in placement_row(html, missing)
    assert "The Docker host box-silent did not answer: " in placement_row(html, hanging)
    assert "shop-web-ecs" in placement_row(html, ecs)
