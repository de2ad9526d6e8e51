"""The build backend interface: where a candidate is built and tested.

A backend starts a build of one candidate commit, tells how it is doing, hands over its log
from an offset and aborts it. The orchestration in building.py talks only to this interface,
so it is the same for Jenkins and for the local runner, and tests can give it a fake.

Errors say whether trying again can help (the transport pattern): BackendUnavailable (down,
timed out, answering 5xx) is passing trouble; BackendRefused (bad credentials, no such job)
needs a person. Both carry a message fit for a deploy's timeline, never a secret.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from lib.git import Repository

if TYPE_CHECKING:
    from .models import Build


@dataclass(frozen=True)
class BuildSpec:
    """What to build: one candidate commit of one deploy, and the image tag to give it."""

    deploy_id: int
    attempt: int
    commit_sha: str
    candidate_ref: str
    branch: str
    image_tag: str
    image_repository: str = ""
    # For a backend that builds in the worker: the candidate's repository, and whether its
    # deploy still wants this build (a cancel may have come meanwhile). Backends know no deploys.
    repository: Repository | None = field(default=None, compare=False)
    still_wanted: Callable[[], bool] = field(default=lambda: True, compare=False)

    def parameters(self) -> dict[str, str]:
        """The build's parameters: Jenkins job parameters, or the local command's environment."""
        return {
            "FC_DEPLOY_ID": str(self.deploy_id),
            "FC_BUILD_ATTEMPT": str(self.attempt),
            "FC_CANDIDATE_SHA": self.commit_sha,
            "FC_CANDIDATE_REF": self.candidate_ref,
            "FC_BRANCH": self.branch,
            "FC_IMAGE_TAG": self.image_tag,
            # Where to push the image: the rollout deploys image_repository:image_tag.
            "FC_IMAGE_REPOSITORY": self.image_repository,
        }


@dataclass(frozen=True)
class BuildReport:
    """Where a started build is. `passed` is None until it has finished.

    `errored`: it ended without a verdict (it could not be prepared or started).
    """

    finished: bool
    passed: bool | None = None
    aborted: bool = False
    errored: bool = False
    summary: str = ""


@dataclass(frozen=True)
class LogChunk:
    """Log text from an offset; `next_offset` is where the next read starts."""

    text: str
    next_offset: int


class BackendError(Exception):
    retryable = False

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


class BackendUnavailable(BackendError):
    """Down, timed out or answering 5xx: try again later."""

    retryable = True


class BackendRefused(BackendError):
    """Refused for a reason a person must fix (credentials, permissions, a missing job)."""


class BuildBackend(Protocol):
    name: str
    # True when start() runs the whole build in the calling worker and returns when it is over
    # (the local runner); False when it only hands the build over (Jenkins).
    runs_in_worker: bool

    def start(self, build: Build, spec: BuildSpec) -> None:
        """Start the build, writing what identifies it (queue id, number, URL) on `build`."""

    def status(self, build: Build) -> BuildReport:
        """Where the build is now; may fill in what start() could not know yet."""

    def read_log(self, build: Build, offset: int) -> LogChunk:
        """The backend's log from `offset` (the backend's own unit)."""

    def abort(self, build: Build) -> None:
        """Stop the build; doing it twice, or after the build ended, does no harm."""


def backend_for(backend_name: str) -> BuildBackend:
    # Imported here: each backend pulls in its own client library.
    if backend_name == "jenkins":
        from .jenkins import JenkinsBackend

        return JenkinsBackend.from_settings()
    if backend_name == "local":
        from .local_backend import LocalBackend

        return LocalBackend()
    raise BackendRefused(f"there is no build backend called '{backend_name}'")
