"""The git side of a deploy, run with the real `git` program.

A deploy first builds a *candidate*: the default branch with the requested branch merged into
it, pushed to a ref the tool owns (refs/fatcontroller/...). Once the candidate is proven it is
pushed to the default branch as a fast-forward. If anybody moved the default branch meanwhile
that push is refused and nothing is ever forced.

No Django here, so the module can be used and tested on its own.
"""

import fcntl
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from lib.process_groups import run_in_own_group
from lib.urls import redact_text

MAX_BRANCH_NAME_LENGTH = 200
CANDIDATE_REF_PREFIX = "refs/fatcontroller/"

_HEADS_REFSPEC = "+refs/heads/*:refs/remotes/origin/*"
_CANDIDATES_REFSPEC = f"+{CANDIDATE_REF_PREFIX}*:{CANDIDATE_REF_PREFIX}*"
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")

# Variables that point git at another repository; set when we run under a git hook.
_REPOSITORY_ENV_VARS = (
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_COUNT",
    "GIT_CONFIG_PARAMETERS",
    "GIT_DIR",
    "GIT_GRAFT_FILE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_INTERNAL_SUPER_PREFIX",
    "GIT_NAMESPACE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_OBJECT_DIRECTORY",
    "GIT_PREFIX",
    "GIT_REPLACE_REF_BASE",
    "GIT_SHALLOW_FILE",
    "GIT_WORK_TREE",
)

# Signs in git's stderr that the remote could not be reached, as opposed to refusing us.
_UNREACHABLE_SIGNS = (
    "could not resolve host",
    "could not resolve hostname",
    "temporary failure in name resolution",
    "failed to connect",
    "couldn't connect to server",
    "connection refused",
    "connection reset",
    "connection timed out",
    "operation timed out",
    "network is unreachable",
    "no route to host",
    "the remote end hung up unexpectedly",
    "early eof",
    "the requested url returned error: 5",
)

_FORBIDDEN_CHARACTERS = {
    " ": "spaces",
    "~": "'~'",
    "^": "'^'",
    ":": "':'",
    "?": "'?'",
    "*": "'*'",
    "[": "'['",
    "\\": "backslashes",
}


def redact(text: str) -> str:
    """Mask the credentials of every URL in text (lib.urls' rule: https://***@host/x)."""
    return redact_text(text)


class GitError(Exception):
    """A git command failed; retryable says whether trying again later may help."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(redact(message))
        self.retryable = retryable

    @property
    def message(self) -> str:
        return self.args[0]


class MergeConflict(GitError):
    def __init__(self, branch: str, onto: str, files: list[str]):
        self.files = files
        shown = ", ".join(files[:20]) + (f" and {len(files) - 20} more" if len(files) > 20 else "")
        super().__init__(f"{branch} does not merge cleanly into {onto}: conflicts in {shown}")


class BranchNotFound(GitError):
    def __init__(self, branch: str):
        self.branch = branch
        super().__init__(f"branch {branch!r} does not exist on origin")


class PushRejected(GitError):
    def __init__(self, branch: str):
        self.branch = branch
        super().__init__(
            f"origin's {branch} moved since the candidate was made, so it cannot be "
            "fast-forwarded to it; nothing was forced. Make a new candidate and try again."
        )


class InvalidBranchName(ValueError):
    pass


def _ref_problem(name: str) -> str | None:
    """What makes name unusable as part of a git ref (git check-ref-format rules), if anything."""
    if not name:
        return "may not be empty"
    if len(name) > MAX_BRANCH_NAME_LENGTH:
        return f"may not be longer than {MAX_BRANCH_NAME_LENGTH} characters"
    for char in name:
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return "may not contain control characters such as newlines or tabs"
        if char in _FORBIDDEN_CHARACTERS:
            return f"may not contain {_FORBIDDEN_CHARACTERS[char]}"
    if ".." in name:
        return "may not contain '..'"
    if "@{" in name:
        return "may not contain '@{'"
    if name.startswith("/") or name.endswith("/"):
        return "may not start or end with '/'"
    if "//" in name:
        return "may not contain '//'"
    for component in name.split("/"):
        if component.startswith("."):
            return "may not have a part starting with '.'"
        if component.endswith(".lock"):
            return "may not have a part ending with '.lock'"
    if name.endswith("."):
        return "may not end with '.'"
    return None


def validate_branch_name(name: str) -> str:
    """Return name if git would accept it as a branch name, else raise InvalidBranchName."""
    if name.startswith("-"):
        problem = "may not start with '-'"
    elif name in ("HEAD", "@"):
        problem = f"may not be {name!r}"
    else:
        problem = _ref_problem(name)
    if problem:
        raise InvalidBranchName(f"branch name {problem}")
    return name


def _validate_candidate_ref(ref: str) -> str:
    # The push to this ref is forced, so it must never be able to name a branch or a tag.
    if not ref.startswith(CANDIDATE_REF_PREFIX):
        raise ValueError(f"candidate refs must start with {CANDIDATE_REF_PREFIX!r}: {ref!r}")
    problem = _ref_problem(ref)
    if problem:
        raise ValueError(f"candidate ref {problem}: {ref!r}")
    return ref


def _validate_revision(revision: str) -> str:
    if _SHA.fullmatch(revision):
        return revision
    if revision.startswith(("refs/heads/", CANDIDATE_REF_PREFIX)) and not _ref_problem(revision):
        return revision
    raise ValueError(
        "expected a full commit sha or a refs/heads/ or refs/fatcontroller/ ref, "
        f"not {redact(revision)!r}"
    )


def _git_date(when: datetime) -> str:
    # A naive datetime would mean a different instant, and so a different sha, on each machine.
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError("the candidate's date must be timezone-aware")
    return f"@{int(when.timestamp())} {when.strftime('%z')}"


def _looks_unreachable(stderr: str) -> bool:
    lowered = stderr.lower()
    return any(sign in lowered for sign in _UNREACHABLE_SIGNS)


def _stderr_summary(stderr: str, lines: int = 6) -> str:
    kept = [line for line in stderr.strip().splitlines() if not line.startswith("hint:")]
    return "\n".join(kept[-lines:]) or "no error output"


def _run(
    args: list[str], *, cwd: Path | None, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    # Not subprocess.run: on a timeout it kills git alone, leaving helpers such as index-pack,
    # git-remote-https or ssh still working on the repository after the lock is released. A
    # group of its own lets us kill them all; its new session leaves ssh no terminal to prompt on.
    return run_in_own_group(
        args,
        timeout=timeout,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        errors="replace",
    )


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    # flock() conflicts between separate open()s even inside one process, so a fresh
    # descriptor per use keeps out other threads as well as other processes.
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


@dataclass
class Repository:
    """One application's repository: a clone in workdir of the repository at remote_url."""

    workdir: Path
    remote_url: str
    default_branch: str = "main"
    timeout: float = 120.0
    author_name: str = "Fat Controller"
    author_email: str = "fatcontroller@localhost"

    def __post_init__(self) -> None:
        # Made absolute because git runs in other directories (the clone's staging one).
        self.workdir = Path(self.workdir).absolute()
        validate_branch_name(self.default_branch)
        if not self.remote_url or self.remote_url.startswith("-"):
            raise ValueError(f"not a repository URL: {redact(self.remote_url)!r}")
        if any(ord(char) < 0x20 for char in self.remote_url):
            raise ValueError("repository URL may not contain control characters")

    @property
    def lock_path(self) -> Path:
        return self.workdir.with_name(self.workdir.name + ".lock")

    # Public API. Every method that uses the workdir holds the lock for its whole run.

    def sync(self) -> None:
        """Clone, or bring the clone's view of origin's branches up to date."""
        with self._locked():
            self._sync()

    def remote_branches(self) -> list[str]:
        with self._locked():
            self._sync()
            refs = self._git("for-each-ref", "--format=%(refname)", "refs/remotes/origin/")
        prefix = "refs/remotes/origin/"
        names = (line.removeprefix(prefix) for line in refs.stdout.splitlines())
        return sorted(name for name in names if name and name != "HEAD")

    def list_branches(self) -> list[str]:
        """The remote's branches by ls-remote: no clone, no lock, so never behind a build."""
        result = self._git(
            "ls-remote",
            "--heads",
            "--",
            self.remote_url,
            in_workdir=False,
            doing=f"list {self._url}",
        )
        prefix = "refs/heads/"
        names = (line.split("\t")[-1] for line in result.stdout.splitlines())
        return sorted(name.removeprefix(prefix) for name in names if name.startswith(prefix))

    def branch_exists(self, branch: str) -> bool:
        ref = f"refs/heads/{validate_branch_name(branch)}"
        result = self._git(
            "ls-remote", "--", self.remote_url, ref, in_workdir=False, doing=f"list {self._url}"
        )
        return any(line.split("\t")[-1] == ref for line in result.stdout.splitlines())

    def head_of(self, branch: str) -> str:
        validate_branch_name(branch)
        with self._locked():
            self._sync()
            return self._require_remote_branch(branch)

    def make_candidate(
        self, branch: str, candidate_ref: str, message: str, when: datetime
    ) -> tuple[str, str]:
        """Merge origin's branch into the default branch and push it to candidate_ref.

        Returns (sha of the branch merged, sha of the candidate). The same inputs give the
        same candidate sha, so a task that runs twice makes the same candidate. A branch
        already merged gives no merge commit: the candidate is the default branch's head.
        """
        validate_branch_name(branch)
        _validate_candidate_ref(candidate_ref)
        if not message.strip():
            raise ValueError("a candidate needs a commit message")
        date = _git_date(when)
        with self._locked():
            self._sync()
            base = self._require_remote_branch(self.default_branch)
            head = self._require_remote_branch(branch)
            self._checkout_detached(base)
            self._merge(branch, message, date)
            candidate = self._commit_sha("HEAD")
            # Forced because candidate refs belong to the tool: a rebuilt candidate replaces it.
            self._git(
                "push",
                "--quiet",
                "--",
                "origin",
                f"+{candidate}:{candidate_ref}",
                doing=f"push {candidate_ref} to {self._url}",
            )
        return head, candidate

    def checkout(self, sha_or_ref: str) -> None:
        """Check out a commit from origin, even one made by another machine, cleanly."""
        revision = _validate_revision(sha_or_ref)
        with self._locked():
            self._checkout_detached(self._fetch_commit(revision))

    @contextmanager
    def checked_out(self, sha_or_ref: str) -> Iterator[Path]:
        """Check out a commit and keep the clone to this block alone (a build runs in it).

        Nothing else touches the clone until the block ends: a cancelled build still dying
        cannot have the next deploy's candidate checked out from under it.
        """
        revision = _validate_revision(sha_or_ref)
        with self._locked():
            self._checkout_detached(self._fetch_commit(revision))
            yield self.workdir

    def push_to_default(self, candidate_sha: str) -> None:
        """Fast-forward origin's default branch to the candidate, or raise PushRejected."""
        if not _SHA.fullmatch(candidate_sha):
            raise ValueError(f"expected a full commit sha, not {candidate_sha!r}")
        target = f"refs/heads/{self.default_branch}"
        with self._locked():
            self._fetch_commit(candidate_sha)
            result = self._git(
                "push",
                "--porcelain",
                "--",
                "origin",
                f"{candidate_sha}:{target}",
                check=False,
            )
        if result.returncode == 0:
            return
        if "(non-fast-forward)" in result.stdout or "(fetch first)" in result.stdout:
            raise PushRejected(self.default_branch)
        raise self._failure(
            result, f"push to {self.default_branch} on {self._url}", result.stdout + result.stderr
        )

    def is_on_default(self, sha: str) -> bool:
        """Whether origin's default branch already contains the commit."""
        if not _SHA.fullmatch(sha):
            raise ValueError(f"expected a full commit sha, not {sha!r}")
        with self._locked():
            self._sync()
            base = self._require_remote_branch(self.default_branch)
            if self._commit_sha(sha) is None:
                return False
            result = self._git("merge-base", "--is-ancestor", sha, base, check=False)
        return result.returncode == 0

    def commits_not_on_default(
        self, sha: str, limit: int = 50, *, fetch: bool = True
    ) -> list[dict]:
        """Commits in sha that origin's default branch lacks, newest first, merges left out.

        fetch=False compares with the default branch as this clone last fetched it: right
        after make_candidate, that is the base the candidate was made on, and a fetch more
        would cost a round trip to origin for the same answer.
        """
        revision = _validate_revision(sha)
        if limit <= 0:
            return []
        with self._locked():
            if fetch:
                self._sync()
            tip = self._fetch_commit(revision)  # clones first if there is no clone yet
            base = self._require_remote_branch(self.default_branch)
            result = self._git(
                "log",
                "-z",
                "--no-merges",
                f"--max-count={limit}",
                "--format=%H%x1f%an%x1f%s",
                tip,
                "--not",
                base,
                "--",
            )
        commits = []
        for record in filter(None, result.stdout.split("\0")):
            commit_sha, author, subject = record.strip("\n").split("\x1f", 2)
            commits.append({"sha": commit_sha, "author": author, "subject": subject})
        return commits

    # Working with the clone. These expect the lock to be held.

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with _exclusive_lock(self.lock_path):
            self._remove_stale_git_locks()
            yield

    def _remove_stale_git_locks(self) -> None:
        # With our lock held no git runs here, so a lock file is left by a git killed on timeout
        # and would otherwise fail every later command.
        git_dir = self.workdir / ".git"
        for pattern in ("*.lock", "refs/**/*.lock"):
            for stale in git_dir.glob(pattern):
                stale.unlink(missing_ok=True)

    def _sync(self, *, candidates: bool = False) -> None:
        if self._is_clone():
            self._git("remote", "set-url", "--", "origin", self.remote_url)
        else:
            self._clone()
        # The refspecs are spelled out so the fetch never depends on the clone's config.
        refspecs = [_HEADS_REFSPEC, _CANDIDATES_REFSPEC] if candidates else [_HEADS_REFSPEC]
        self._git(
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--",
            "origin",
            *refspecs,
            doing=f"fetch from {self._url}",
        )

    def _is_clone(self) -> bool:
        if not (self.workdir / ".git").is_dir():
            return False
        return self._git("rev-parse", "--git-dir", check=False).returncode == 0

    def _clone(self) -> None:
        if self.workdir.exists() and not (self.workdir / ".git").exists():
            if not self.workdir.is_dir() or any(self.workdir.iterdir()):
                raise GitError(
                    f"{self.workdir} holds something other than a clone; not replacing it"
                )
        # Cloned aside and moved into place, so a clone killed half way is never mistaken for one.
        staging = self.workdir.with_name(self.workdir.name + ".cloning")
        shutil.rmtree(staging, ignore_errors=True)
        self._git(
            "clone",
            "--quiet",
            "--no-checkout",
            "--template=",
            "--origin",
            "origin",
            "--",
            self.remote_url,
            str(staging),
            in_workdir=False,
            doing=f"clone {self._url}",
        )
        shutil.rmtree(self.workdir, ignore_errors=True)
        staging.rename(self.workdir)

    def _commit_sha(self, revision: str) -> str | None:
        result = self._git(
            "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", check=False
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def _require_remote_branch(self, branch: str) -> str:
        sha = self._commit_sha(f"refs/remotes/origin/{branch}")
        if sha is None:
            raise BranchNotFound(branch)
        return sha

    def _fetch_commit(self, revision: str) -> str:
        """The sha of revision on origin, fetching it first unless it is a sha we already have."""
        if not self._is_clone():
            self._sync()
        # A ref may have moved on origin since we last looked; a sha never changes.
        if _SHA.fullmatch(revision):
            known = self._commit_sha(revision)
            if known is not None:
                return known  # one look, not a second for the same answer
        self._sync(candidates=True)
        if revision.startswith("refs/heads/"):
            return self._require_remote_branch(revision.removeprefix("refs/heads/"))
        sha = self._commit_sha(revision)
        if sha is None:
            raise GitError(f"{revision} is not on {self._url}")
        return sha

    def _checkout_detached(self, sha: str) -> None:
        # --force also drops anything a killed merge left behind (index, MERGE_HEAD).
        self._git("checkout", "--quiet", "--force", "--detach", sha)
        self._git("clean", "-ffdxq")

    def _merge(self, branch: str, message: str, date: str) -> None:
        result = self._git(
            "merge",
            "--no-ff",
            "--no-edit",
            "--no-log",
            "--no-gpg-sign",
            "-m",
            message,
            f"refs/remotes/origin/{branch}",
            env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date},
            check=False,
        )
        if result.returncode == 0:
            return
        conflicted = self._conflicted_files()
        if not conflicted:
            raise self._failure(result, f"merge {branch} into {self.default_branch}")
        self._git("merge", "--abort")
        raise MergeConflict(branch, self.default_branch, conflicted)

    def _conflicted_files(self) -> list[str]:
        result = self._git("diff", "--name-only", "--diff-filter=U", "-z", check=False)
        return list(dict.fromkeys(filter(None, result.stdout.split("\0"))))

    # Running git.

    @property
    def _url(self) -> str:
        return redact(self.remote_url)

    def _environment(self, extra: dict[str, str] | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _REPOSITORY_ENV_VARS}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            LC_ALL="C",
            GIT_CONFIG_NOSYSTEM="1",
            # ext:: and fd:: remotes run commands; nothing here needs them.
            GIT_ALLOW_PROTOCOL="file:git:http:https:ssh",
            # The environment beats -c user.name, so an inherited identity must be overridden.
            GIT_AUTHOR_NAME=self.author_name,
            GIT_AUTHOR_EMAIL=self.author_email,
            GIT_COMMITTER_NAME=self.author_name,
            GIT_COMMITTER_EMAIL=self.author_email,
        )
        for name in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
            env.pop(name, None)
        env.update(extra or {})
        return env

    def _command(self, args: tuple[str, ...]) -> list[str]:
        return [
            "git",
            "-c",
            f"user.name={self.author_name}",
            "-c",
            f"user.email={self.author_email}",
            # Hooks from a user's global config have no business in the tool's clone.
            "-c",
            "core.hooksPath=/dev/null",
            # Automatic gc must finish inside our lock, not carry on in the background.
            "-c",
            "gc.autoDetach=false",
            *args,
        ]

    def _git(
        self,
        *args: str,
        in_workdir: bool = True,
        env: dict[str, str] | None = None,
        check: bool = True,
        doing: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        doing = doing or f"git {args[0]}"
        try:
            result = _run(
                self._command(args),
                cwd=self.workdir if in_workdir else None,
                env=self._environment(env),
                timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            raise GitError(f"{doing} timed out after {self.timeout:g} s", retryable=True) from None
        if check and result.returncode != 0:
            raise self._failure(result, doing)
        return result

    @staticmethod
    def _failure(
        result: subprocess.CompletedProcess[str], doing: str, output: str | None = None
    ) -> GitError:
        stderr = result.stderr if output is None else output
        return GitError(
            f"{doing} failed: {_stderr_summary(stderr)}", retryable=_looks_unreachable(stderr)
        )
