"""The boundaries the stateful slot test fakes: the git remote, the build backend and ECS.

Each fake is as small as the seam it replaces and keeps what happened at it, so the test can
judge it: the remote remembers every push to the default branch with what the deploy had
earned at that moment; the backend ends a build only when the test has decided its verdict;
ECS answers each rollout tick with what the test said the services are doing. Nothing here
decides a state: the code under test does, through its own functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from builds.backends import BuildReport, LogChunk
from builds.models import Build, BuildStatus
from deploys import slot
from deploys.models import Deploy, DeployEvent
from deploys.statemachine import IllegalTransition, transition
from deploys.states import State
from lib.git import BranchNotFound, MergeConflict, PushRejected

# Branches whose merge always conflicts with the default branch.
CONFLICTING_PREFIX = "conflict/"


def sha_of(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Push:
    """One push to the default branch, with what its deploy had earned when it happened."""

    sha: str
    deploy_id: int | None
    state: str
    build_passed: bool
    soaked: bool  # a verifying -> merging_to_default event on its timeline


@dataclass
class FakeRemote:
    """A git remote as a commit graph: enough to fast-forward, reject and say what is merged."""

    default_branch: str
    branches: dict[str, str]
    default_head: str = ""
    ancestors: dict[str, frozenset[str]] = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.default_head = self.default_head or sha_of("root", self.default_branch)
        self.ancestors.setdefault(self.default_head, frozenset())
        for head in self.branches.values():
            self.ancestors.setdefault(head, frozenset({self.default_head}))

    def commit_on_default(self, what: str) -> str:
        """Someone else pushed to the default branch (a hotfix)."""
        sha = sha_of(self.default_head, what)
        self.ancestors[sha] = self.ancestors[self.default_head] | {self.default_head}
        self.default_head = sha
        return sha

    def push_branch(self, branch: str) -> None:
        head = sha_of(self.default_head, "branch", branch, str(len(self.ancestors)))
        self.ancestors[head] = self.ancestors[self.default_head] | {self.default_head}
        self.branches[branch] = head

    def contains(self, sha: str) -> bool:
        return sha == self.default_head or sha in self.ancestors[self.default_head]


@dataclass
class FakeRepository:
    """What the pipeline and actions call on lib.git.Repository, answered at once."""

    remote: FakeRemote

    def branch_exists(self, branch: str) -> bool:
        return branch in self.remote.branches

    def make_candidate(self, branch, candidate_ref, message, when) -> tuple[str, str]:
        remote = self.remote
        if branch not in remote.branches:
            raise BranchNotFound(branch)
        if branch.startswith(CONFLICTING_PREFIX):
            raise MergeConflict(branch, remote.default_branch, ["shop/prices.txt"])
        base, head = remote.default_head, remote.branches[branch]
        # The same inputs give the same candidate, as with real git (the deploy's own time).
        candidate = sha_of(base, head, message, when.isoformat())
        remote.ancestors[candidate] = remote.ancestors[base] | remote.ancestors[head] | {base, head}
        return head, candidate

    def commits_not_on_default(self, sha: str, limit: int = 50, *, fetch=True) -> list[dict]:
        return [{"sha": sha, "author": "Alice", "subject": "the change"}]

    def push_to_default(self, candidate_sha: str) -> None:
        remote = self.remote
        if not (
            candidate_sha == remote.default_head
            or remote.default_head in remote.ancestors.get(candidate_sha, frozenset())
        ):
            raise PushRejected(remote.default_branch)  # never forced
        deploy = Deploy.objects.filter(candidate_sha=candidate_sha).first()
        latest = deploy.builds.order_by("-attempt").first() if deploy else None
        remote.pushes.append(
            Push(
                sha=candidate_sha,
                deploy_id=deploy.pk if deploy else None,
                state=deploy.state if deploy else "",
                build_passed=latest is not None and latest.status == BuildStatus.SUCCEEDED,
                soaked=bool(deploy)
                and DeployEvent.objects.filter(
                    deploy=deploy,
                    from_state=State.VERIFYING,
                    to_state=State.MERGING_TO_DEFAULT,
                ).exists(),
            )
        )
        remote.default_head = candidate_sha

    def is_on_default(self, sha: str) -> bool:
        return self.remote.contains(sha)


class FakeBuildBackend:
    """A handed-over backend (as Jenkins is): a build ends when the test gives its verdict."""

    name = "fake-ci"
    runs_in_worker = False

    def __init__(self, verdicts: dict[int, bool], aborted: list[int]):
        self.verdicts = verdicts
        self.aborted = aborted

    def start(self, build: Build, spec) -> None:
        build.queue_id = 1000 + build.pk
        Build.objects.filter(pk=build.pk).update(queue_id=build.queue_id)

    def status(self, build: Build) -> BuildReport:
        if build.pk not in self.verdicts:
            return BuildReport(finished=False, summary="running")
        passed = self.verdicts[build.pk]
        return BuildReport(finished=True, passed=passed, summary="green" if passed else "red")

    def read_log(self, build: Build, offset: int) -> LogChunk:
        return LogChunk("", offset)

    def abort(self, build: Build) -> None:
        self.aborted.append(build.pk)


# What ECS may answer a tick of each watching state, the good answer first; None: no news.
ECS_ANSWERS = {
    State.DEPLOYING: ("out", "fails", "image_missing", None),
    State.VERIFYING: ("soak_over", "unhealthy", None),
    State.ROLLING_BACK: ("restored", "stuck", None),
}


class FakeEcs:
    """The rollout engine's three steps, moving a deploy as the real ones do on each answer.

    Only the step bodies are replaced (forward.deploy_step, soak.verify_step, back.rollback_step):
    the real tick, its lease and its rescheduling still run around them.
    """

    def __init__(self):
        self.answers: dict[tuple[int, str], str | None] = {}

    def _answer(self, deploy: Deploy) -> str | None:
        return self.answers.get((deploy.pk, deploy.state))

    def _move(self, deploy: Deploy, to_state: State, message: str, **changes) -> None:
        try:
            transition(
                deploy.pk,
                to_state,
                from_states=frozenset({deploy.state}),
                message=message,
                **changes,
            )
        except IllegalTransition:
            pass  # moved on meanwhile, as rollout.ticks.move allows

    def deploy_step(self, deploy: Deploy) -> None:
        answer = self._answer(deploy)
        if answer == "out":
            self._move(
                deploy,
                State.VERIFYING,
                "every phase is out; watching before merging",
                verify_until=timezone.now(),
            )
        elif answer == "fails":
            self._move(deploy, State.ROLLING_BACK, "web: tasks stopped. Rolling back.")
        elif answer == "image_missing":
            self._move(deploy, State.FAILED, "the image is not in its registry: nothing touched")

    def verify_step(self, deploy: Deploy) -> None:
        answer = self._answer(deploy)
        if answer == "soak_over":
            self._move(deploy, State.MERGING_TO_DEFAULT, "healthy through the soak; merging")
        elif answer == "unhealthy":
            self._move(deploy, State.ROLLING_BACK, "web: health check failing. Rolling back.")

    def rollback_step(self, deploy: Deploy) -> None:
        answer = self._answer(deploy)
        if answer == "restored":
            self._move(deploy, State.ROLLED_BACK, "every service runs what it ran before")
        elif answer == "stuck":
            # As rollout.back: the queue freezes until a person looks.
            with transaction.atomic():
                self._move(deploy, State.ROLLBACK_FAILED, "the rollback failed")
                slot.lock(
                    deploy.application,
                    actor=None,
                    reason=f"the rollback of deploy #{deploy.pk} failed: see its timeline",
                )
