"""The deploy's states and its legal moves: one table, readable in a minute.

queued -> merging -> building -> deploying -> verifying -> merging_to_default -> succeeded
                 \\-> merge_conflict     \\-> build_failed   \\-> rolling_back -> rolled_back
                                                           rolling_back -> rollback_failed
merge_only: queued -> merging -> building -> merging_to_default -> merged
restore (of an earlier release): queued -> deploying -> verifying -> succeeded
any state before deploying -> cancelled; build_failed -> abandoned; a step that
cannot go on for a reason other than a conflict or a red build -> failed (deploying
too, when nothing was touched: a missing image).

Beside the table, what each state means elsewhere (MEANING): the task that runs its step,
where the progress bar stands, what chat is told when a deploy enters it, and the buttons
it offers. Its words on the pages are the State's label. tests/deploys/test_states.py fails
when a state lacks any of it.
"""

from dataclasses import dataclass
from enum import StrEnum

from django.db import models


class Mode(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    MERGE_ONLY = "merge_only", "Merge without deploying"
    # A person putting back what an earlier release ran; not the automatic rollback, which
    # is a state of a deploy that failed (rolling_back).
    RESTORE = "restore", "Restore an earlier release"


class State(models.TextChoices):
    QUEUED = "queued", "Queued"
    MERGING = "merging", "Merging"
    BUILDING = "building", "Building"
    BUILD_FAILED = "build_failed", "Build failed"
    DEPLOYING = "deploying", "Deploying"
    VERIFYING = "verifying", "Verifying"
    ROLLING_BACK = "rolling_back", "Rolling back"
    MERGING_TO_DEFAULT = "merging_to_default", "Merging to default"
    SUCCEEDED = "succeeded", "Succeeded"
    MERGED = "merged", "Merged"
    MERGE_CONFLICT = "merge_conflict", "Merge conflict"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"
    CANCELLED = "cancelled", "Cancelled"
    ABANDONED = "abandoned", "Abandoned"
    FAILED = "failed", "Failed"


S = State

# Holding the application's merge slot: at most one deploy per application is in one of
# these (a partial unique constraint on Deploy says so).
SLOT_STATES = frozenset(
    {
        S.MERGING,
        S.BUILDING,
        S.BUILD_FAILED,  # held for its owner to retry or abandon
        S.DEPLOYING,
        S.VERIFYING,
        S.ROLLING_BACK,
        S.MERGING_TO_DEFAULT,
    }
)
ACTIVE_STATES = SLOT_STATES | {S.QUEUED}
FINAL_STATES = frozenset(
    {
        S.SUCCEEDED,
        S.MERGED,
        S.MERGE_CONFLICT,
        S.ROLLED_BACK,
        S.ROLLBACK_FAILED,
        S.CANCELLED,
        S.ABANDONED,
        S.FAILED,
    }
)
# Final states that mean the change shipped.
SUCCESS_STATES = frozenset({S.SUCCEEDED, S.MERGED})

TRANSITIONS: dict[State, frozenset[State]] = {
    S.QUEUED: frozenset({S.MERGING, S.DEPLOYING, S.CANCELLED}),
    S.MERGING: frozenset({S.BUILDING, S.MERGE_CONFLICT, S.CANCELLED, S.FAILED}),
    S.BUILDING: frozenset(
        {S.DEPLOYING, S.MERGING_TO_DEFAULT, S.BUILD_FAILED, S.CANCELLED, S.FAILED}
    ),
    S.BUILD_FAILED: frozenset({S.BUILDING, S.ABANDONED, S.CANCELLED}),
    S.DEPLOYING: frozenset({S.VERIFYING, S.ROLLING_BACK, S.FAILED}),
    S.VERIFYING: frozenset({S.MERGING_TO_DEFAULT, S.SUCCEEDED, S.ROLLING_BACK}),
    S.ROLLING_BACK: frozenset({S.ROLLED_BACK, S.ROLLBACK_FAILED}),
    S.MERGING_TO_DEFAULT: frozenset({S.SUCCEEDED, S.MERGED, S.FAILED}),
    **{final: frozenset() for final in FINAL_STATES},
}

# States a mode never enters.
NOT_IN_MODE: dict[Mode, frozenset[State]] = {
    Mode.DEPLOY: frozenset({S.MERGED}),
    Mode.MERGE_ONLY: frozenset(
        {S.DEPLOYING, S.VERIFYING, S.ROLLING_BACK, S.ROLLED_BACK, S.ROLLBACK_FAILED, S.SUCCEEDED}
    ),
    # A restore redeploys revisions that were built and merged long ago.
    Mode.RESTORE: frozenset(
        {
            S.MERGING,
            S.BUILDING,
            S.BUILD_FAILED,
            S.MERGING_TO_DEFAULT,
            S.MERGED,
            S.MERGE_CONFLICT,
            S.ABANDONED,
        }
    ),
}

# Moves only one mode makes: a restore goes straight to deploying and ends after its soak.
MODE_ONLY_MOVES: dict[tuple[State, State], Mode] = {
    (S.QUEUED, S.DEPLOYING): Mode.RESTORE,
    (S.VERIFYING, S.SUCCEEDED): Mode.RESTORE,
}


def is_allowed(from_state: str, to_state: str, mode: str) -> bool:
    only_for = MODE_ONLY_MOVES.get((State(from_state), State(to_state)))
    return (
        to_state in TRANSITIONS[State(from_state)]
        and to_state not in NOT_IN_MODE[Mode(mode)]
        and (only_for is None or only_for == mode)
    )


# ------------------------------------------------------------------- what each state means


class Action(StrEnum):
    """What a person may ask of a deploy; the value is the last part of its button's path."""

    CANCEL = "cancel"
    ABANDON = "abandon"
    RETRY_BUILD = "retry-build"
    RESTORE = "restore"


# The kinds of chat message, each with its emoji in deploys/notify.py.
START, FAILURE, ROLLBACK, SUCCESS = "start", "failure", "rollback", "success"


@dataclass(frozen=True)
class Said:
    """What chat is told when a deploy enters the state: its kind, and the words after
    "deploy #N of <branch> by <person>". Moves from `unless_from` are not told."""

    kind: str
    words: str
    unless_from: frozenset[State] = frozenset()


@dataclass(frozen=True)
class Meaning:
    # The Celery task that runs the state's step; None when it waits (for the slot, for a
    # person) or is final.
    step: str | None
    # The step is a tick that watches ECS and runs again until the state moves.
    watches: bool
    # Where the progress bar stands: merge, build, phase (the lowest not out), soak,
    # merge-to-default, or "" past its end; and whether that step shows as failed.
    bar: str
    bar_failed: bool
    # What chat is told on entering it; None: nothing (a step along the way).
    said: Said | None
    actions: frozenset[Action]


NO_ACTIONS: frozenset[Action] = frozenset()
_CANCEL = frozenset({Action.CANCEL})

MEANING: dict[State, Meaning] = {
    S.QUEUED: Meaning(
        step=None,  # the slot hands it its first step
        watches=False,
        bar="merge",
        bar_failed=False,
        said=None,
        actions=_CANCEL,
    ),
    S.MERGING: Meaning(
        step="deploys.tasks.make_candidate",
        watches=False,
        bar="merge",
        bar_failed=False,
        said=Said(START, "started"),
        actions=_CANCEL,
    ),
    S.BUILDING: Meaning(
        step="builds.tasks.run_build",
        watches=False,
        bar="build",
        bar_failed=False,
        said=None,
        actions=_CANCEL,
    ),
    S.BUILD_FAILED: Meaning(
        step=None,  # waits for its owner, or the hold window
        watches=False,
        bar="build",
        bar_failed=True,
        said=Said(FAILURE, "failed to build"),
        actions=frozenset({Action.RETRY_BUILD, Action.ABANDON, Action.CANCEL}),
    ),
    S.DEPLOYING: Meaning(
        step="deploys.tasks.deploy_tick",
        watches=True,
        bar="phase",
        bar_failed=False,
        # Told only from queued, i.e. a restore: an ordinary deploy's rollout
        # started when it began merging.
        said=Said(START, "started", unless_from=frozenset({S.BUILDING})),
        actions=NO_ACTIONS,
    ),
    S.VERIFYING: Meaning(
        step="deploys.tasks.verify_tick",
        watches=True,
        bar="soak",
        bar_failed=False,
        said=None,
        actions=NO_ACTIONS,
    ),
    S.ROLLING_BACK: Meaning(
        step="deploys.tasks.rollback_tick",
        watches=True,
        bar="phase",
        bar_failed=True,
        said=Said(ROLLBACK, "is rolling back"),
        actions=NO_ACTIONS,
    ),
    S.MERGING_TO_DEFAULT: Meaning(
        step="deploys.tasks.merge_to_default",
        watches=False,
        bar="merge-to-default",
        bar_failed=False,
        said=None,
        actions=NO_ACTIONS,
    ),
    S.SUCCEEDED: Meaning(
        step=None,
        watches=False,
        bar="",
        bar_failed=False,
        said=Said(SUCCESS, "succeeded"),
        # Only a release that rolled something out (deploys.actions.allowed_actions).
        actions=frozenset({Action.RESTORE}),
    ),
    S.MERGED: Meaning(
        step=None,
        watches=False,
        bar="",
        bar_failed=False,
        said=Said(SUCCESS, "was merged (nothing deployed)"),
        actions=NO_ACTIONS,
    ),
    S.MERGE_CONFLICT: Meaning(
        step=None,
        watches=False,
        bar="merge",
        bar_failed=True,
        said=Said(FAILURE, "has a merge conflict"),
        actions=NO_ACTIONS,
    ),
    S.ROLLED_BACK: Meaning(
        step=None,
        watches=False,
        bar="phase",
        bar_failed=True,
        said=Said(ROLLBACK, "was rolled back"),
        actions=NO_ACTIONS,
    ),
    S.ROLLBACK_FAILED: Meaning(
        step=None,
        watches=False,
        bar="phase",
        bar_failed=True,
        said=Said(FAILURE, "failed, and its rollback failed too"),
        actions=NO_ACTIONS,
    ),
    S.CANCELLED: Meaning(
        step=None,
        watches=False,
        bar="",
        bar_failed=True,
        # Told only once it had started: nobody was told of a queued deploy.
        said=Said(FAILURE, "was cancelled", unless_from=frozenset({S.QUEUED})),
        actions=NO_ACTIONS,
    ),
    S.ABANDONED: Meaning(
        step=None,
        watches=False,
        bar="build",
        bar_failed=True,
        said=Said(FAILURE, "was abandoned"),
        actions=NO_ACTIONS,
    ),
    S.FAILED: Meaning(
        step=None,
        watches=False,
        bar="",
        bar_failed=True,
        said=Said(FAILURE, "failed"),
        actions=NO_ACTIONS,
    ),
}


def states_allowing(action: Action) -> frozenset[State]:
    return frozenset(state for state, meaning in MEANING.items() if action in meaning.actions)
