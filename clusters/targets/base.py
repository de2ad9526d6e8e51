"""The target interface: what the rollout engine may ask of wherever a service runs.

A target adapter (one module beside this one: ecs.py, ...) knows nothing of deploys. It is
handed a Placement (clusters.models) and, for the calls that change something, a Ledger: the
placement's durable notes for this rollout (in practice its ServiceRollout row). An adapter
writes what it learns or starts on the ledger before its next call to the outside world, so a
worker that dies anywhere leaves enough for another to carry on: every call is idempotent,
and a start or restore already under way is adopted, never made twice.

Two errors, and only two, leave an adapter:

* TargetUnavailable: the target did not answer, or kept failing for now; try again later.
* TargetRefused: the target said no (access denied, no such service, a bad definition);
  trying again will not help, a person must act.

Each carries a short message fit for a deploy's timeline, in plain words.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


class TargetError(Exception):
    """A target could not do what was asked; `retryable` says whether to try again."""

    retryable = False


class TargetUnavailable(TargetError):
    """The target did not answer, or is failing for now: try again later."""

    retryable = True


class TargetRefused(TargetError):
    """The target refused (access, a missing service, a bad definition): a person must act."""


class Ledger(Protocol):
    """A placement's notes for one rollout, kept where a worker's death cannot lose them.

    revision_before: what the placement ran before it was touched (what a restore puts back).
    revision_made: the revision this rollout made for its image.
    start_handle / restore_handle: the target's name for the start or restore under way.
    detail: anything else the adapter wants to remember (JSON).
    commit: the commit the image was built from ('' when not known), for targets that are
    told it (a legacy job's COMMIT parameter); read only.
    """

    revision_before: str
    revision_made: str
    start_handle: str
    restore_handle: str
    detail: dict[str, Any]
    commit: str

    def write(self, **fields: Any) -> None:
        """Set the fields and store them before returning."""


class Progress(enum.Enum):
    PROGRESSING = "progressing"
    OUT = "out"
    FAILED = "failed"


@dataclass(frozen=True)
class Watch:
    """One started placement to observe: the start (or restore) and the revision it brings.

    settled: it was out already and is watched through the soak.
    wait: how long observe may wait for the placement to change while it is neither out nor
    failed. A target told of changes as they happen (a Docker engine's event stream: see
    Target.waits) uses it to answer at the change rather than at the next poll; the others
    ignore it and answer at once.
    """

    placement: Any  # clusters.models.Placement
    handle: str
    revision: str
    settled: bool = False
    wait: float = 0.0


@dataclass(frozen=True)
class Observation:
    """What a started placement is doing now.

    OUT means every wanted instance runs `revision` through the start this rollout made;
    steady on anything else is never OUT. `reason` says in plain words why it FAILED.
    `error` is set instead when this placement could not be looked at (the others of the
    same call still are).
    """

    progress: Progress
    running: int | None = None  # None: not known (the start was not found)
    desired: int | None = None
    reason: str = ""
    error: TargetError | None = None
    # What the target did or saw in this call, for the deploy page: plain dicts, each the
    # same when seen again (so they can be merged into the ledger's detail without repeats).
    # The rollout engine keeps them with record_events.
    events: tuple[dict[str, Any], ...] = ()
    # True when observe waited out the whole Watch.wait for a change: the engine may look
    # again at once, since the wait has spaced its calls already.
    waited: bool = False


def record_events(ledger: Ledger, events: Sequence[dict[str, Any]]) -> None:
    """Merge events into the ledger's detail["events"], each once, in the order first seen."""
    kept = list(ledger.detail.get("events", []))
    new = [e for e in events if e not in kept]
    if new:
        ledger.write(detail={**ledger.detail, "events": kept + new})


class Target(Protocol):
    """Where placements of one kind run. Every call is idempotent.

    start_word and instance_word are the target's own words for a start and for what runs
    ("deployment" and "task" on ECS), so that the timeline speaks the target's language.
    """

    start_word: str
    instance_word: str

    def name(self, placement: Any) -> str:
        """The placement as people say it ('shop-web on demo')."""

    def label(self, revision: str) -> str:
        """A revision as people say it ('web:42', not the whole ARN)."""

    def current(self, placement: Any) -> str:
        """The revision the placement runs now."""

    def start(self, placement: Any, image: str, ledger: Ledger) -> str:
        """Start the placement on `image`; returns the start's handle.

        Records revision_before (first), revision_made and start_handle on the ledger as it
        goes; a start already under way is adopted.
        """

    def observe(self, watches: Sequence[Watch]) -> list[Observation]:
        """One observation per watch, in order; an adapter may batch them."""

    def restore(self, placement: Any, revision: str, ledger: Ledger) -> str:
        """Put `revision` back; returns the restore's handle (recorded as restore_handle).

        Adopted when the placement already runs it or a restore of it is under way.
        """

    def image_exists(self, image: str) -> bool:
        """Is the image there to run? False when it is not; an error when nobody can say."""

    # Optional: `refusal(placement, image) -> str`, why the placement could not take the
    # image at all ('' when it could), asked of every placement before any is touched, so
    # that one refused in a late phase fails the deploy before an early phase goes out (a
    # Docker placement with no hard memory limit). Asks nothing of the outside world.
    #
    # Optional: `waits = True`, for a target whose observe uses Watch.wait. The engine then
    # looks again at once after such a target starts or restores a placement (so the wait
    # begins while the new containers come up) and after an observe that waited.
