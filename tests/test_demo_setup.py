"""The demo's setup: its configuration file, `manage.py demo`, and its git remote."""

import subprocess
from pathlib import Path

from django.core.management import call_command

from clusters.models import Placement, PlacementKind
from deploys.models import Application
from devtools import demo
from devtools.demo import (
    BUILD_COMMAND,
    DEMO_SLUG,
    LEGACY_FAILS,
    LEGACY_FAILS_BRANCH,
    OOM_BRANCH,
    PUBLISHING_FILES,
    create_demo_remote,
    demo_config,
)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


ECS_PLACEMENTS = [
    (1, "demo-shop-mailer", "app"),
    (1, "demo-shop-worker", "app"),
    (1, "demo-shop-poller", "app"),
    (2, "demo-shop-static", "app"),
    (3, "demo-shop-web", "app"),
]
LEGACY_PLACEMENTS = [
    (1, "legacy-deploy-mailer", "1.0.0"),
    (1, "legacy-deploy-worker", "1.0.0"),
    (1, "legacy-deploy-poller", "1.0.0"),
    (2, "legacy-deploy-static", "1.0.0"),
    (3, "legacy-deploy-web", "1.0.0"),
]


def test_the_demo_configuration_has_five_services_in_three_phases_on_both_sides():
    config = demo_config()
    assert config.slug == DEMO_SLUG
    assert config.warnings == []
    assert config.build_command == BUILD_COMMAND
    assert config.image_repository == "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-shop"
    assert config.soak_seconds == 5
    assert config.phase_timeout_seconds == 120
    placements = [(service.phase, p) for service in config.services for p in service.placements]
    assert [(phase, p.ecs_service, p.container) for phase, p in placements if p.cluster] == (
        ECS_PLACEMENTS
    )
    assert {p.cluster for _phase, p in placements if p.cluster} == {"demo"}
    assert [
        (phase, p.legacy_job, p.legacy_version) for phase, p in placements if p.legacy_job
    ] == LEGACY_PLACEMENTS
    assert config.clusters["demo"].region == "us-east-1"
    assert [s.process_type for s in config.services] == [
        "other",
        "worker",
        "poller",
        "static",
        "web",
    ]


def test_manage_py_demo_sets_the_application_up_on_both_sides_and_again_changes_nothing(
    db, settings, tmp_path, capsys
):
    settings.VAR_DIR = tmp_path
    call_command("demo")
    first = capsys.readouterr().out
    app = Application.objects.get(slug=DEMO_SLUG)
    assert app.git_remote_url == str(tmp_path / "demo" / "demo-shop.git")
    assert app.build_command == BUILD_COMMAND
    assert app.image_repository.endswith(".dkr.ecr.us-east-1.amazonaws.com/demo-shop")
    assert (app.soak_seconds, app.phase_timeout_seconds) == (5, 120)
    placements = Placement.objects.filter(service__application=app).order_by("service__phase", "id")
    assert [
        (p.service.phase, p.ecs_service_name, p.container_name)
        for p in placements
        if p.kind == PlacementKind.ECS
    ] == ECS_PLACEMENTS
    assert [
        (p.service.phase, p.legacy_job, p.legacy_version)
        for p in placements
        if p.kind == PlacementKind.LEGACY
    ] == LEGACY_PLACEMENTS
    assert "created placement web on demo/demo-shop-web" in first
    assert "Log in as admin with password" in first

    call_command("demo")
    assert "demo-shop: unchanged" in capsys.readouterr().out


def test_the_demo_remote_has_a_branch_whose_image_runs_out_of_memory(tmp_path):
    remote = create_demo_remote(tmp_path / "demo-shop.git")
    branches = git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()
    assert sorted(branches) == sorted(["main", *demo.BRANCHES])
    image = git(remote, "show", f"refs/heads/{OOM_BRANCH}:image.json")
    assert f'"{demo.BEHAVIOUR_ANNOTATION}": "oom"' in image
    assert demo.BEHAVIOUR_ANNOTATION not in git(remote, "show", "refs/heads/main:image.json")
    # It merges cleanly: it changes nothing main changed after it was cut.
    base = git(remote, "merge-base", "refs/heads/main", f"refs/heads/{OOM_BRANCH}")
    on_main = git(remote, "diff", "--name-only", base, "refs/heads/main").split()
    on_branch = git(remote, "diff", "--name-only", base, f"refs/heads/{OOM_BRANCH}").split()
    assert not set(on_main) & set(on_branch)


def test_the_demo_remote_has_a_branch_whose_legacy_job_fails(tmp_path):
    remote = create_demo_remote(tmp_path / "demo-shop.git")
    image = git(remote, "show", f"refs/heads/{LEGACY_FAILS_BRANCH}:image.json")
    assert f'"{demo.BEHAVIOUR_ANNOTATION}": "{LEGACY_FAILS}"' in image
    base = git(remote, "merge-base", "refs/heads/main", f"refs/heads/{LEGACY_FAILS_BRANCH}")
    on_main = git(remote, "diff", "--name-only", base, "refs/heads/main").split()
    on_branch = git(remote, "diff", "--name-only", base, f"refs/heads/{LEGACY_FAILS_BRANCH}")
    assert not set(on_main) & set(on_branch.split())  # it merges cleanly


def test_a_publishing_remote_without_a_newer_branch_gets_it_and_nothing_else(tmp_path, monkeypatch):
    older = {k: v for k, v in demo.BRANCHES.items() if k != LEGACY_FAILS_BRANCH}
    with monkeypatch.context() as patched:
        patched.setattr(demo, "BRANCHES", older)
        remote = create_demo_remote(tmp_path / "demo-shop.git")
    heads = {b: git(remote, "rev-parse", f"refs/heads/{b}") for b in ["main", *older]}

    assert create_demo_remote(remote) == remote

    assert {b: git(remote, "rev-parse", f"refs/heads/{b}") for b in heads} == heads
    assert git(remote, "rev-parse", f"refs/heads/{LEGACY_FAILS_BRANCH}^") == heads["main"]
    create_demo_remote(remote)  # up to date: nothing more
    assert git(remote, "rev-parse", f"refs/heads/{LEGACY_FAILS_BRANCH}^") == heads["main"]


def test_a_relative_path_never_commits_into_the_repository_around_it(tmp_path, monkeypatch):
    outer = tmp_path / "project"
    outer.mkdir()
    git(outer, "init", "-q", "--initial-branch=trunk")
    (outer / "notes.txt").write_text("work in progress\n")
    monkeypatch.chdir(outer)

    remote = create_demo_remote(Path("var/demo/demo-shop.git"))

    assert remote == outer / "var" / "demo" / "demo-shop.git"
    assert git(remote, "rev-parse", "--verify", "refs/heads/main")
    assert git(outer, "branch", "--list") == ""  # still no commit, no branch
    assert git(outer, "status", "--porcelain", "--untracked-files=all", "notes.txt") == (
        "?? notes.txt"
    )


def test_a_remote_from_an_older_demo_gets_the_publishing_build_and_the_new_branch(
    tmp_path, monkeypatch
):
    old_main = {k: v for k, v in demo.MAIN_FILES.items() if k not in PUBLISHING_FILES}
    old_main["build.sh"] = "#!/bin/sh\nset -e\nsh checks/lint.sh\n"
    old_branches = {k: v for k, v in demo.BRANCHES.items() if k != OOM_BRANCH}
    with monkeypatch.context() as patched:
        patched.setattr(demo, "MAIN_FILES", old_main)
        patched.setattr(demo, "BRANCHES", old_branches)
        remote = create_demo_remote(tmp_path / "demo-shop.git")
    old_heads = {
        branch: git(remote, "rev-parse", f"refs/heads/{branch}")
        for branch in ["main", *old_branches]
    }

    assert create_demo_remote(remote) == remote

    new_main = git(remote, "rev-parse", "refs/heads/main")
    assert git(remote, "rev-parse", f"{new_main}^") == old_heads["main"]  # one commit on top
    for name in PUBLISHING_FILES:
        assert git(remote, "show", f"{new_main}:{name}") == demo.MAIN_FILES[name].strip()
    for branch in old_branches:
        assert git(remote, "rev-parse", f"refs/heads/{branch}") == old_heads[branch]
    assert git(remote, "rev-parse", f"refs/heads/{OOM_BRANCH}^") == new_main

    create_demo_remote(remote)  # up to date: nothing more
    assert git(remote, "rev-parse", "refs/heads/main") == new_main
