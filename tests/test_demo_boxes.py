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
