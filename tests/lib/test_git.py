"""lib.git against real repositories: a bare remote in tmp_path and clones of it."""

import fcntl
import os
import socket
import subprocess
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lib.git import (
    BranchNotFound,
    GitError,
    InvalidBranchName,
    MergeConflict,
    PushRejected,
    Repository,
    validate_branch_name,
)
from tests.ports import closed_port

WHEN = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
CANDIDATE = "refs/fatcontroller/candidates/42"
HOSTILE_BRANCHES = ["x;touch${IFS}pwned", "$(touch${IFS}pwned)", "`touch${IFS}pwned`", "a;b|c&d"]


@pytest.fixture(autouse=True)
def no_personal_git_config(tmp_path, monkeypatch):
    """Run as on a fresh worker machine: no global git config, no identity to fall back on."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_DIR"):
        monkeypatch.delenv(name, raising=False)
    # Anything a hostile name managed to run would land here.
    monkeypatch.chdir(tmp_path)


def git(cwd: Path, *args: str, author: str = "Seed") -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": author,
        "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.com",
        "GIT_COMMITTER_NAME": author,
        "GIT_COMMITTER_EMAIL": f"{author.lower()}@example.com",
    }
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


def commit(clone: Path, path: str, content: str, subject: str, author: str = "Seed") -> str:
    (clone / path).write_text(content)
    git(clone, "add", "--", path)
    git(clone, "commit", "--quiet", "-m", subject, author=author)
    return git(clone, "rev-parse", "HEAD")


@dataclass
class Remote:
    bare: Path
    seed: Path

    @property
    def url(self) -> str:
        return str(self.bare)

    def sha(self, ref: str) -> str | None:
        result = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", ref],
            cwd=self.bare,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip() or None

    def refs(self) -> str:
        return git(self.bare, "for-each-ref")

    def add_branch(self, name: str, path: str) -> str:
        git(self.seed, "checkout", "--quiet", "-b", name, "refs/remotes/origin/main")
        sha = commit(self.seed, path, "hello\n", f"Add {path}")
        git(self.seed, "push", "--quiet", "origin", f"HEAD:refs/heads/{name}")
        return sha

    def repository(self, workdir: str = "work", **options) -> Repository:
        return Repository(workdir=self.bare.parent / workdir, remote_url=self.url, **options)


@pytest.fixture
def remote(tmp_path) -> Remote:
    """main with app.txt; feature/clean adds a file; feature/conflict and main both edit line 2."""
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "--quiet", str(bare), str(seed))
    git(seed, "checkout", "--quiet", "-b", "main")
    commit(seed, "app.txt", "line 1\nversion = 1\nline 3\n", "Start the app")

    git(seed, "checkout", "--quiet", "-b", "feature/clean")
    commit(seed, "clean.txt", "one\n", "Add clean.txt", author="Alice")
    commit(seed, "clean.txt", "one\ntwo\n", "Extend clean.txt", author="Alice")

    git(seed, "checkout", "--quiet", "-b", "feature/conflict", "main")
    commit(seed, "app.txt", "line 1\nversion = conflict\nline 3\n", "Change version", "Bob")

    git(seed, "checkout", "--quiet", "main")
    commit(seed, "app.txt", "line 1\nversion = 2\nline 3\n", "Bump version")
    git(seed, "push", "--quiet", "origin", "main", "feature/clean", "feature/conflict")
    return Remote(bare=bare, seed=seed)


def assert_nothing_ran(tmp_path: Path) -> None:
    assert not list(tmp_path.rglob("pwned"))


# validate_branch_name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "empty"),
        ("@", "'@'"),
        ("HEAD", "'HEAD'"),
        ("--upload-pack=touch x", "start with '-'"),
        ("-f", "start with '-'"),
        ("../x", "'..'"),
        ("a..b", "'..'"),
        ("a b", "spaces"),
        ("a;rm -rf x", "spaces"),
        ("a\nb", "control characters"),
        ("a\tb", "control characters"),
        ("a\x00b", "control characters"),
        ("a\x7fb", "control characters"),
        ("a~1", "'~'"),
        ("a^", "'^'"),
        ("a:b", "':'"),
        ("a?", "'?'"),
        ("a*", "'*'"),
        ("a[b", "'['"),
        ("a\\b", "backslashes"),
        ("a@{1}", "'@{'"),
        ("/a", "start or end with '/'"),
        ("a/", "start or end with '/'"),
        ("a//b", "'//'"),
        (".a", "starting with '.'"),
        ("a/.b", "starting with '.'"),
        ("a.lock", "ending with '.lock'"),
        ("a.lock/b", "ending with '.lock'"),
        ("a.", "end with '.'"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_hostile_branch_names_are_rejected_with_the_rule_broken(name, rule):
    with pytest.raises(InvalidBranchName, match="branch name may not") as caught:
        validate_branch_name(name)
    assert rule in str(caught.value)


def test_the_message_names_the_rule():
    with pytest.raises(InvalidBranchName) as caught:
        validate_branch_name("a b")
    assert str(caught.value) == "branch name may not contain spaces"


@pytest.mark.parametrize(
    "name",
    ["main", "feature/x-1", "a;b", "a@b", "é/ü", "a./b", "a{b}", "x" * 200, *HOSTILE_BRANCHES],
)
def test_unusual_but_legal_names_are_returned_unchanged(name):
    assert validate_branch_name(name) == name


AGREEMENT_NAMES = [
    "main",
    "feature/login",
    "release-1.2",
    "a;b",
    "a@b",
    "@@",
    "a@",
    "{",
    "$(x)",
    "`x`",
    "é",
    "a./b",
    "a.b.lock.c",
    "refs/heads/x",
    "x/HEAD",
    "HEAD",
    "-x",
    "a b",
    "a\nb",
    "a\x7fb",
    "a..b",
    "a@{b",
    "a~",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[",
    "a\\b",
    "/a",
    "a/",
    "a//b",
    ".a",
    "a/.b",
    "a.lock",
    "a/b.lock",
    "a.",
    ".",
    "a/..",
]


def test_agrees_with_git_check_ref_format(tmp_path):
    disagreements = []
    for name in AGREEMENT_NAMES:
        by_git = subprocess.run(
            ["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True
        )
        try:
            validate_branch_name(name)
            ours = True
        except InvalidBranchName:
            ours = False
        if ours != (by_git.returncode == 0):
            disagreements.append(name)
    assert disagreements == []


# Candidates


def test_clean_merge_makes_a_candidate_that_fast_forwards_main(remote):
    main_before = remote.sha("refs/heads/main")
    branch_head = remote.sha("refs/heads/feature/clean")
    repo = remote.repository()

    head, candidate = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)

    assert head == branch_head
    parents = git(remote.bare, "rev-list", "--parents", "-n", "1", candidate).split()[1:]
    assert parents == [main_before, branch_head]
    assert remote.sha(CANDIDATE) == candidate
    assert remote.sha("refs/heads/main") == main_before
    assert git(remote.bare, "log", "-1", "--format=%B", candidate) == "Deploy #42"
    assert git(remote.bare, "log", "-1", "--format=%an <%ae>|%aI|%cI", candidate).split("|") == [
        "Fat Controller <fatcontroller@localhost>",
        "2024-05-01T12:30:00+00:00",
        "2024-05-01T12:30:00+00:00",
    ]

    repo.push_to_default(candidate)

    assert remote.sha("refs/heads/main") == candidate
    assert repo.head_of("main") == candidate


def test_the_same_candidate_twice_gives_the_same_sha_on_any_machine(remote):
    repo = remote.repository()
    _, first = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    _, again = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    _, elsewhere = remote.repository("elsewhere").make_candidate(
        "feature/clean", CANDIDATE, "Deploy #42", WHEN
    )
    assert first == again == elsewhere
    assert remote.sha(CANDIDATE) == first


def test_a_branch_already_merged_gives_the_default_branch_itself(remote):
    main = remote.sha("refs/heads/main")
    assert remote.repository().make_candidate("main", CANDIDATE, "Redeploy", WHEN) == (main, main)
    assert remote.sha(CANDIDATE) == main


def test_a_later_deploy_replaces_its_candidate_ref(remote):
    repo = remote.repository()
    _, first = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    _, second = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42 again", WHEN)
    assert first != second
    assert remote.sha(CANDIDATE) == second


def test_a_naive_date_is_refused(remote):
    with pytest.raises(ValueError, match="timezone-aware"):
        remote.repository().make_candidate("feature/clean", CANDIDATE, "Deploy", datetime.now())


@pytest.mark.parametrize(
    "ref", ["refs/heads/main", "refs/tags/v1", "refs/fatcontroller/a b", "refs/fatcontroller/"]
)
def test_candidate_refs_outside_the_tools_namespace_are_refused(remote, ref):
    refs_before = remote.refs()
    with pytest.raises(ValueError):
        remote.repository().make_candidate("feature/clean", ref, "Deploy", WHEN)
    assert remote.refs() == refs_before


def test_conflict_names_the_files_and_leaves_everything_clean(remote):
    refs_before = remote.refs()
    repo = remote.repository()

    with pytest.raises(MergeConflict) as caught:
        repo.make_candidate("feature/conflict", CANDIDATE, "Deploy #42", WHEN)

    assert caught.value.files == ["app.txt"]
    assert "app.txt" in str(caught.value)
    assert "feature/conflict" in str(caught.value)
    assert caught.value.retryable is False
    assert not (repo.workdir / ".git" / "MERGE_HEAD").exists()
    assert git(repo.workdir, "status", "--porcelain") == ""
    assert remote.refs() == refs_before
    # The clone is fit for the next deploy.
    repo.make_candidate("feature/clean", CANDIDATE, "Deploy #43", WHEN)


def test_missing_branch_is_not_found_and_nothing_is_pushed(remote):
    refs_before = remote.refs()
    repo = remote.repository()
    with pytest.raises(BranchNotFound, match="feature/missing"):
        repo.make_candidate("feature/missing", CANDIDATE, "Deploy", WHEN)
    with pytest.raises(BranchNotFound):
        repo.head_of("feature/missing")
    assert remote.refs() == refs_before


def test_missing_default_branch_is_not_found(remote):
    repo = remote.repository(default_branch="trunk")
    with pytest.raises(BranchNotFound, match="trunk"):
        repo.make_candidate("feature/clean", CANDIDATE, "Deploy", WHEN)


def test_invalid_branch_name_is_refused_before_git_runs(remote):
    repo = remote.repository()
    with pytest.raises(InvalidBranchName):
        repo.make_candidate("--upload-pack=touch pwned", CANDIDATE, "Deploy", WHEN)
    assert not repo.workdir.exists()


def test_branches_named_like_shell_commands_are_just_names(remote, tmp_path):
    for index, name in enumerate(HOSTILE_BRANCHES):
        remote.add_branch(name, f"hostile{index}.txt")
    repo = remote.repository()

    assert set(HOSTILE_BRANCHES) <= set(repo.remote_branches())
    for name in HOSTILE_BRANCHES:
        assert repo.branch_exists(name)
        head, candidate = repo.make_candidate(name, CANDIDATE, f"Deploy {name}", WHEN)
        assert head == remote.sha(f"refs/heads/{name}")
        assert remote.sha(CANDIDATE) == candidate
    with pytest.raises(BranchNotFound):
        repo.make_candidate("y;touch${IFS}pwned", CANDIDATE, "Deploy", WHEN)
    assert not repo.branch_exists("y;touch${IFS}pwned")
    assert_nothing_ran(tmp_path)


def test_hostile_remote_urls_run_nothing(tmp_path):
    with pytest.raises(ValueError):
        Repository(workdir=tmp_path / "w", remote_url="--upload-pack=touch pwned")
    repo = Repository(workdir=tmp_path / "w", remote_url="ext::sh -c touch% pwned")
    with pytest.raises(GitError, match="not allowed"):
        repo.sync()
    assert_nothing_ran(tmp_path)


# Pushing to the default branch


def test_push_is_rejected_when_main_moved_and_nothing_is_forced(remote, tmp_path):
    repo = remote.repository()
    _, candidate = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    someone = tmp_path / "someone"
    git(tmp_path, "clone", "--quiet", remote.url, str(someone))
    their_commit = commit(someone, "other.txt", "mine\n", "Someone else's change", "Carol")
    git(someone, "push", "--quiet", "origin", "HEAD:refs/heads/main")

    with pytest.raises(PushRejected) as caught:
        repo.push_to_default(candidate)

    assert remote.sha("refs/heads/main") == their_commit
    assert "main moved" in str(caught.value)
    assert "nothing was forced" in str(caught.value)
    assert caught.value.retryable is False
    # Same answer once our clone knows about their commit.
    repo.sync()
    with pytest.raises(PushRejected):
        repo.push_to_default(candidate)
    assert remote.sha("refs/heads/main") == their_commit


def test_push_from_a_machine_that_did_not_make_the_candidate(remote):
    _, candidate = remote.repository().make_candidate("feature/clean", CANDIDATE, "Go", WHEN)
    remote.repository("pusher").push_to_default(candidate)
    assert remote.sha("refs/heads/main") == candidate


# Reaching the remote


def test_missing_remote_path_is_a_clear_permanent_error(tmp_path):
    missing = tmp_path / "nowhere.git"
    repo = Repository(workdir=tmp_path / "w", remote_url=str(missing))
    with pytest.raises(GitError) as caught:
        repo.sync()
    assert caught.value.retryable is False
    assert str(caught.value).startswith(f"clone {missing} failed:")
    assert "does not exist" in str(caught.value)
    assert not repo.workdir.exists()


def test_unreachable_remote_is_retryable_and_hides_credentials(tmp_path):
    url = f"https://user:secret@127.0.0.1:{closed_port()}/x.git"
    repo = Repository(workdir=tmp_path / "w", remote_url=url, timeout=10)
    for attempt in (repo.sync, lambda: repo.branch_exists("main")):
        with pytest.raises(GitError) as caught:
            attempt()
        message = str(caught.value)
        assert caught.value.retryable is True
        assert "secret" not in message
        assert "user" not in message
        assert "127.0.0.1" in message


def test_a_remote_that_never_answers_times_out_retryably(tmp_path):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"https://user:secret@127.0.0.1:{silent.getsockname()[1]}/x.git"
        repo = Repository(workdir=tmp_path / "w", remote_url=url, timeout=0.5)
        with pytest.raises(GitError) as caught:
            repo.sync()
    assert caught.value.retryable is True
    assert "timed out after 0.5 s" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_the_remote_url_can_change(remote, tmp_path):
    repo = remote.repository()
    repo.sync()
    moved = tmp_path / "moved.git"
    remote.bare.rename(moved)
    with pytest.raises(GitError):
        repo.sync()
    repo.remote_url = str(moved)
    assert repo.head_of("main") == git(moved, "rev-parse", "refs/heads/main")


# Checking out


def test_checkout_of_a_candidate_made_in_another_workdir(remote):
    _, candidate = remote.repository().make_candidate("feature/clean", CANDIDATE, "Go", WHEN)
    builder = remote.repository("builder")

    builder.checkout(CANDIDATE)

    assert git(builder.workdir, "rev-parse", "HEAD") == candidate
    assert (builder.workdir / "clean.txt").read_text() == "one\ntwo\n"
    assert "version = 2" in (builder.workdir / "app.txt").read_text()

    other = remote.repository("other")
    other.checkout(candidate)
    assert git(other.workdir, "rev-parse", "HEAD") == candidate


def test_checkout_throws_away_local_changes(remote):
    repo = remote.repository()
    repo.checkout("refs/heads/main")
    (repo.workdir / "app.txt").write_text("edited\n")
    (repo.workdir / "build").mkdir()
    (repo.workdir / "build" / "junk").write_text("x")

    repo.checkout("refs/heads/feature/clean")

    assert git(repo.workdir, "rev-parse", "HEAD") == remote.sha("refs/heads/feature/clean")
    assert git(repo.workdir, "status", "--porcelain", "--ignored") == ""


def test_checkout_of_an_unknown_commit_or_bad_revision(remote):
    repo = remote.repository()
    with pytest.raises(GitError, match="is not on"):
        repo.checkout("0" * 40)
    with pytest.raises(BranchNotFound):
        repo.checkout("refs/heads/nope")
    for bad in ("main", "abc123", "--force", "refs/tags/v1", "HEAD"):
        with pytest.raises(ValueError):
            repo.checkout(bad)


def test_a_git_killed_mid_command_does_not_wedge_the_clone(remote):
    repo = remote.repository()
    repo.sync()
    (repo.workdir / ".git" / "index.lock").write_text("")
    repo.checkout("refs/heads/main")
    assert git(repo.workdir, "rev-parse", "HEAD") == remote.sha("refs/heads/main")


# Reading branches and commits


def test_remote_branches_follow_origin(remote):
    repo = remote.repository()
    assert repo.remote_branches() == ["feature/clean", "feature/conflict", "main"]
    git(remote.bare, "update-ref", "-d", "refs/heads/feature/conflict")
    assert repo.remote_branches() == ["feature/clean", "main"]


def test_branch_exists_asks_origin(remote):
    repo = remote.repository()
    assert repo.branch_exists("feature/clean")
    assert not repo.branch_exists("feature")
    assert not repo.branch_exists("clean")
    assert not repo.workdir.exists()


def test_head_of(remote):
    assert remote.repository().head_of("feature/clean") == remote.sha("refs/heads/feature/clean")


def test_commits_not_on_default(remote):
    repo = remote.repository()
    _, candidate = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)

    commits = repo.commits_not_on_default(candidate)

    assert [(c["author"], c["subject"]) for c in commits] == [
        ("Alice", "Extend clean.txt"),
        ("Alice", "Add clean.txt"),
    ]
    assert commits[0]["sha"] == remote.sha("refs/heads/feature/clean")
    assert repo.commits_not_on_default(candidate, limit=1) == commits[:1]
    repo.push_to_default(candidate)
    assert repo.commits_not_on_default(candidate) == []


def test_commits_of_a_candidate_just_made_need_no_second_fetch(remote, tmp_path):
    repo = remote.repository()
    _, candidate = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    fetched = repo.commits_not_on_default(candidate)
    remote.bare.rename(tmp_path / "gone.git")  # origin no longer answers

    assert repo.commits_not_on_default(candidate, fetch=False) == fetched
    with pytest.raises(GitError):
        repo.commits_not_on_default(candidate)


def test_commits_without_a_fetch_clone_first_when_there_is_no_clone(remote):
    _, candidate = remote.repository().make_candidate("feature/clean", CANDIDATE, "Go", WHEN)
    elsewhere = remote.repository("elsewhere")

    commits = elsewhere.commits_not_on_default(candidate, fetch=False)

    assert [c["subject"] for c in commits] == ["Extend clean.txt", "Add clean.txt"]


# Sharing a workdir


def test_a_workdir_is_used_by_one_process_at_a_time(remote):
    repo = remote.repository()
    repo.sync()
    finished = threading.Event()
    with open(repo.lock_path, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: (repo.sync(), finished.set()))
        worker.start()
        assert not finished.wait(0.3)
    worker.join(10)
    assert finished.is_set()


def test_a_folder_that_is_not_a_clone_is_left_alone(remote):
    repo = remote.repository()
    repo.workdir.mkdir()
    (repo.workdir / "precious.txt").write_text("keep me")
    with pytest.raises(GitError, match="not replacing it"):
        repo.sync()
    assert (repo.workdir / "precious.txt").read_text() == "keep me"


def test_an_empty_folder_becomes_a_clone(remote):
    repo = remote.repository()
    repo.workdir.mkdir()
    assert repo.head_of("main") == remote.sha("refs/heads/main")


def test_is_on_default_tells_a_pushed_candidate_from_one_not_yet_pushed(remote):
    repo = remote.repository()
    _, candidate = repo.make_candidate("feature/clean", CANDIDATE, "Deploy #42", WHEN)
    assert not repo.is_on_default(candidate)
    repo.push_to_default(candidate)
    assert repo.is_on_default(candidate)
    assert not repo.is_on_default("0" * 40)
    with pytest.raises(ValueError):
        repo.is_on_default("main")
