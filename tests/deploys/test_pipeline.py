"""The whole pipeline with real git and the real build runner; steps run in this process."""

import subprocess

import pytest

from builds.models import BuildStatus
from deploys import actions
from deploys.repositories import repository_for
from deploys.states import Mode, State
from tests.queueing import queue, queue_and_drive


def remote_head(remote, branch="main") -> str:
    return subprocess.run(
        ["git", "rev-parse", f"refs/heads/{branch}"],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def parents(remote, sha) -> list[str]:
    out = subprocess.run(
        ["git", "rev-list", "--parents", "-n", "1", sha],
        cwd=remote,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[1:]


@pytest.fixture
def ship(application, user, drive, django_capture_on_commit_callbacks):
    def run(branch, **kw):
        return queue_and_drive(
            application, user, branch, drive, django_capture_on_commit_callbacks, **kw
        )

    return run


def test_a_clean_merge_only_deploy_lands_on_main(ship, application, demo_remote):
    before = remote_head(demo_remote)
    deploy = ship("feature/clean-merge")
    assert deploy.state == State.MERGED, list(deploy.events.values_list("message", flat=True))
    after = remote_head(demo_remote)
    assert after == deploy.candidate_sha
    assert parents(demo_remote, after) == [before, deploy.head_sha]
    build = deploy.builds.get()
    assert build.status == BuildStatus.SUCCEEDED
    assert "integration: 4 tests passed" in build.log
    assert [e.to_state for e in deploy.events.all()] == [
        State.QUEUED,
        State.MERGING,
        State.BUILDING,
        State.MERGING_TO_DEFAULT,
        State.MERGED,
    ]


def test_a_deploy_mode_candidate_merges_and_says_nothing_was_deployed(ship, demo_remote):
    deploy = ship("feature/clean-merge", mode=Mode.DEPLOY)
    assert deploy.state == State.SUCCEEDED
    nowhere = "no service has a placement to deploy to"
    assert deploy.events.filter(message__contains=nowhere).exists()
    assert remote_head(demo_remote) == deploy.candidate_sha


def test_a_conflict_ends_in_merge_conflict_naming_the_files(ship, demo_remote):
    before = remote_head(demo_remote)
    deploy = ship("feature/conflicting-prices")
    assert deploy.state == State.MERGE_CONFLICT
    assert "shop/prices.txt" in deploy.events.last().message
    assert remote_head(demo_remote) == before
    assert not deploy.builds.exists()


def test_a_red_build_holds_the_slot_until_abandoned(
    ship, application, user, other_user, drive, django_capture_on_commit_callbacks, demo_remote
):
    before = remote_head(demo_remote)
    broken = ship("feature/broken-build")
    assert broken.state == State.BUILD_FAILED
    assert "FAIL test_prices" in broken.builds.get().log
    waiting = queue_and_drive(
        application, other_user, "feature/clean-merge", drive, django_capture_on_commit_callbacks
    )
    assert waiting.state == State.QUEUED  # the failed build keeps the slot

    with django_capture_on_commit_callbacks(execute=True):
        actions.abandon(broken, actor=user)
    drive()
    broken.refresh_from_db()
    waiting.refresh_from_db()
    assert broken.state == State.ABANDONED
    assert waiting.state == State.MERGED
    assert remote_head(demo_remote) != before


def test_a_flaky_build_passes_on_retry_and_keeps_its_history(
    ship, user, drive, django_capture_on_commit_callbacks, demo_remote
):
    deploy = ship("feature/flaky-test")
    assert deploy.state == State.BUILD_FAILED
    with django_capture_on_commit_callbacks(execute=True):
        actions.retry_build(deploy, actor=user)
    drive()
    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    builds = list(deploy.builds.order_by("attempt"))
    assert [(b.attempt, b.status) for b in builds] == [
        (1, BuildStatus.FAILED),
        (2, BuildStatus.SUCCEEDED),
    ]
    assert "timed out waiting for the payment stub" in builds[0].log
    assert remote_head(demo_remote) == deploy.candidate_sha


def test_a_step_run_twice_does_the_work_once(
    application, user, sent_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue(application, user, "feature/clean-merge")
    task = sent_tasks.sent[0]
    sent_tasks.sent.append(task)  # delivered twice
    sent_tasks.run_all()
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert deploy.events.filter(to_state=State.BUILDING).count() == 1
    assert deploy.builds.count() == 1


def test_the_default_branch_moving_before_the_push_fails_clearly(
    application, user, sent_tasks, demo_remote, tmp_path, django_capture_on_commit_callbacks
):
    deploy = ship_to_merging_to_default(
        application, user, sent_tasks, django_capture_on_commit_callbacks
    )
    hotfix = push_a_hotfix(demo_remote, tmp_path)

    with django_capture_on_commit_callbacks(execute=True):
        sent_tasks.run_all()
    deploy.refresh_from_db()
    assert deploy.state == State.FAILED
    assert "Queue the branch again" in deploy.events.last().message
    assert remote_head(demo_remote) == hotfix  # never forced


def test_a_merge_step_run_again_after_others_pushed_on_top_still_ends_merged(
    application, user, sent_tasks, demo_remote, tmp_path, django_capture_on_commit_callbacks
):
    """The worker pushed, died before recording it, and main moved on before the retry."""

    deploy = ship_to_merging_to_default(
        application, user, sent_tasks, django_capture_on_commit_callbacks
    )
    repository_for(application).push_to_default(deploy.candidate_sha)
    push_a_hotfix(demo_remote, tmp_path)

    with django_capture_on_commit_callbacks(execute=True):
        sent_tasks.run_all()
    deploy.refresh_from_db()
    assert deploy.state == State.MERGED
    assert "already on main" in deploy.events.last().message


def ship_to_merging_to_default(application, user, sent_tasks, capture):
    with capture(execute=True):
        deploy = queue(application, user, "feature/clean-merge")
    for _ in range(2):  # make the candidate, build it; stop before merging to main
        with capture(execute=True):
            sent_tasks.run_all()
    deploy.refresh_from_db()
    assert deploy.state == State.MERGING_TO_DEFAULT
    return deploy


def push_a_hotfix(remote, tmp_path) -> str:
    other = tmp_path / "someone-else"
    subprocess.run(["git", "clone", "-q", str(remote), str(other)], check=True)
    (other / "hotfix.txt").write_text("urgent\n")
    git = ["git", "-c", "user.name=Someone", "-c", "user.email=someone@example.com"]
    subprocess.run([*git, "add", "hotfix.txt"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Hotfix"], cwd=other, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=other, check=True)
    return remote_head(remote)


def test_a_branch_deleted_after_queueing_fails_the_deploy_clearly(
    application, user, drive, django_capture_on_commit_callbacks, demo_remote
):
    with django_capture_on_commit_callbacks(execute=True):
        deploy = queue(application, user, "feature/clean-merge")
        subprocess.run(
            ["git", "update-ref", "-d", "refs/heads/feature/clean-merge"],
            cwd=demo_remote,
            check=True,
        )
    drive()
    deploy.refresh_from_db()
    assert deploy.state == State.FAILED
    assert "does not exist" in deploy.events.last().message


def test_the_candidate_remembers_the_commits_it_brings(ship, demo_remote):
    deploy = ship("feature/clean-merge")

    branch_head = remote_head(demo_remote, "feature/clean-merge")
    assert deploy.commits, "no diff summary was recorded"
    assert deploy.commits[0]["sha"] == branch_head
    assert all(set(commit) == {"sha", "author", "subject"} for commit in deploy.commits)
    assert all(commit["author"] and commit["subject"] for commit in deploy.commits)
