"""The Docker demo (devtools/demo_boxes.py): `manage.py demo` sets demo-boxes up on the
engine that answers, and says in one line that it does not where none does; its build makes
the deploy's image on that engine, the OOM branch's the variant that runs out of memory."""

import subprocess
import uuid

import pytest
from django.core.management import call_command

from builds.backends import BuildSpec
from builds.local import build_environment, split_command
from clusters.models import Cluster, ClusterKind, Placement, PlacementKind
from clusters.targets.docker_replicas import APPLICATION, SERVICE
from deploys.models import Application
from devtools import demo_boxes, docker_images
from devtools.demo import DEMO_SLUG as SHOP_SLUG


def test_where_no_engine_answers_demo_says_so_in_one_line_and_sets_up_the_rest(
    db, settings, tmp_path, capsys, monkeypatch
):
    settings.VAR_DIR = tmp_path
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", nowhere)

    call_command("demo")

    out = capsys.readouterr().out
    said = [line for line in out.splitlines() if "Docker" in line]
    assert said == [f"No Docker engine answers at {nowhere}: the Docker demo is not set up"]
    assert Application.objects.filter(slug=SHOP_SLUG).exists()
    assert not Application.objects.filter(slug=demo_boxes.DEMO_SLUG).exists()
    assert not Cluster.objects.filter(kind=ClusterKind.DOCKER).exists()
    assert not (tmp_path / "demo" / "demo-boxes.git").exists()


@pytest.mark.docker
def test_where_an_engine_answers_demo_sets_the_docker_demo_up_on_it_and_again_changes_nothing(
    db, settings, tmp_path, capsys, monkeypatch, docker_engine
):
    settings.VAR_DIR = tmp_path
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)

    call_command("demo")

    out = capsys.readouterr().out
    assert "No Docker engine answers" not in out
    app = Application.objects.get(slug=demo_boxes.DEMO_SLUG)
    remote = tmp_path / "demo" / "demo-boxes.git"
    assert app.git_remote_url == str(remote)
    assert app.image_repository == docker_images.HTTP_REPOSITORY
    assert split_command(app.build_command)[-1] == docker_engine.host
    cluster = Cluster.objects.get(name=demo_boxes.DOCKER_CLUSTER)
    assert (cluster.kind, cluster.docker_host) == (ClusterKind.DOCKER, docker_engine.host)
    placements = Placement.objects.filter(service__application=app, kind=PlacementKind.DOCKER)
    shapes = {p.service.name: p.docker_config for p in placements}
    assert set(shapes) == {"box-worker", "box-web"}
    for shape in shapes.values():
        assert shape["replicas"] == 2
        assert shape["network"] == "none"
        assert shape["memory"] == "32m"
        assert shape["healthcheck"]["test"][0] == "CMD-SHELL"
    branches = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    assert sorted(branches) == sorted(["main", *demo_boxes.BRANCHES])
    assert "demo-boxes: 0 created" not in out and f"Created application {app.slug}" in out

    call_command("demo")
    again = capsys.readouterr().out
    assert "demo-boxes: unchanged" in again
    assert "demo-shop: unchanged" in again
    assert Application.objects.filter(slug=demo_boxes.DEMO_SLUG).count() == 1


@pytest.mark.docker
@pytest.mark.parametrize(
    ("branch", "oom"), [("main", False), (demo_boxes.OOM_BRANCH, True)], ids=["main", "oom"]
)
def test_the_build_makes_the_deploys_image_on_the_engine_never_pulled(
    tmp_path, docker_engine, branch, oom
):
    if not docker_images.BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    remote = demo_boxes.create_boxes_remote(tmp_path / "demo-boxes.git")
    work = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", "--branch", branch, str(remote), str(work))
    tag = f"test-{uuid.uuid4().hex[:12]}"
    spec = BuildSpec(
        deploy_id=1,
        attempt=1,
        commit_sha=git(work, "rev-parse", "HEAD"),
        candidate_ref=branch,
        branch=branch,
        image_tag=tag,
        image_repository=docker_images.HTTP_REPOSITORY,
    )
    client = docker_engine.client()
    try:
        # As the local backend runs it: the build command, in the checkout, a plain environment.
        ran = subprocess.run(
            split_command(demo_boxes.build_command(docker_engine.host)),
            cwd=work,
            env=build_environment(spec.parameters()),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, ran.stdout + ran.stderr
        image = client.images.get(f"{docker_images.HTTP_REPOSITORY}:{tag}")
        command = " ".join(image.attrs["Config"]["Cmd"])
        assert ("x=$x$x" in command) is oom
        assert ("httpd" in command) is not oom
        assert image.attrs["Config"]["Healthcheck"]["Test"]
        assert f"image: built {docker_images.HTTP_REPOSITORY}:{tag}" in ran.stdout
    finally:
        for image in client.images.list(name=docker_images.HTTP_REPOSITORY):
            if f"{docker_images.HTTP_REPOSITORY}:{tag}" in image.tags:
                client.images.remove(f"{docker_images.HTTP_REPOSITORY}:{tag}", force=True)
        client.close()


def test_a_build_for_another_repository_fails_and_says_why(tmp_path):
    remote = demo_boxes.create_boxes_remote(tmp_path / "demo-boxes.git")
    work = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", str(remote), str(work))
    env = build_environment({"FC_IMAGE_REPOSITORY": "elsewhere/app", "FC_IMAGE_TAG": "x1"})
    ran = subprocess.run(
        split_command(demo_boxes.build_command(f"unix://{tmp_path}/none.sock")),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1
    assert "the demo builds fatcontroller-demo/http only, not elsewhere/app" in ran.stdout
    assert "unit: 5 tests passed" in ran.stdout  # the checks ran first


def git(cwd, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


# ------------------------------------------------------- through the embedded default


@pytest.fixture(scope="module")
def boxes_server(request, tmp_path_factory, docker_engine):
    """`make run` with DOCKER_HOST at the test's engine: the Docker demo is set up on it."""
    from tests.embedded_server import embedded_for_tests

    if not docker_images.BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    with embedded_for_tests(
        request,
        tmp_path_factory,
        "boxes-var",
        "a test of the Docker demo",
        extra_env={"DOCKER_HOST": docker_engine.host},
    ) as server:
        yield server
    client = docker_engine.client()
    for container in client.containers.list(
        all=True, filters={"label": f"{APPLICATION}={demo_boxes.DEMO_SLUG}"}
    ):
        container.remove(force=True)
    client.close()


def queue_boxes(session, server, branch: str) -> int:
    response = session.post(
        f"{server.url}/api/deploys/",
        json={"application": demo_boxes.DEMO_SLUG, "branch": branch, "mode": "deploy"},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{server.url}/"},
        timeout=10,
    )
    assert response.status_code == 201, server.explain(f"POST /api/deploys/: {response.text}")
    return response.json()["id"]


def running(client) -> dict[str, set[str]]:
    """The demo's running containers' images, by service."""
    found: dict[str, set[str]] = {}
    for container in client.containers.list(
        filters={"label": f"{APPLICATION}={demo_boxes.DEMO_SLUG}", "status": "running"}
    ):
        found.setdefault(container.labels[SERVICE], set()).add(
            f"{container.image.tags[0] if container.image.tags else container.image.id}"
        )
    return found


@pytest.mark.docker
def test_the_clean_branch_goes_out_to_real_containers_and_the_oom_branch_is_rolled_back(
    boxes_server, docker_engine
):
    from deploys.states import State
    from tests.test_embedded_default import build_log, login, wait_for_state

    server = boxes_server
    session = login(server)
    client = docker_engine.client()
    try:
        deploy_id = queue_boxes(session, server, demo_boxes.CLEAN_BRANCH)
        deploy = wait_for_state(
            session, server, deploy_id, State.SUCCEEDED, give_up_at={State.BUILD_FAILED}
        )
        image = f"{docker_images.HTTP_REPOSITORY}:{deploy['candidate_sha'][:12]}"
        assert f"image: built {image}" in build_log(session, server, deploy_id, 1)["text"]
        assert {r["status"] for r in deploy["rollouts"]} == {"done"}, deploy["rollouts"]
        containers = client.containers.list(
            filters={"label": f"{APPLICATION}={demo_boxes.DEMO_SLUG}", "status": "running"}
        )
        by_service: dict[str, list] = {}
        for container in containers:
            by_service.setdefault(container.labels[SERVICE], []).append(container)
        assert sorted(by_service) == ["box-web", "box-worker"], by_service
        for service, replicas in by_service.items():
            assert len(replicas) == 2, (service, replicas)
            for container in replicas:
                assert image in container.image.tags, container.image.tags
                assert container.attrs["HostConfig"]["Memory"] == 32 * 1024 * 1024
                assert container.attrs["State"]["Health"]["Status"] == "healthy"

        deploy_id = queue_boxes(session, server, demo_boxes.OOM_BRANCH)
        deploy = wait_for_state(
            session, server, deploy_id, State.ROLLED_BACK, give_up_at={State.BUILD_FAILED}
        )
        messages = " | ".join(e["message"] for e in deploy["events"])
        assert "oom" in messages.lower(), messages
        statuses = {r["service"]: r["status"] for r in deploy["rollouts"]}
        assert statuses["box-worker"] == "rolled_back", deploy["rollouts"]
        # Back as it was: the clean branch's containers, two of each, and nothing else.
        assert running(client) == {"box-web": {image}, "box-worker": {image}}
        kept = client.containers.list(
            filters={"label": f"{APPLICATION}={demo_boxes.DEMO_SLUG}", "status": "running"}
        )
        assert len(kept) == 4, kept
    finally:
        client.close()
