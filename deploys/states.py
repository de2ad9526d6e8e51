"""The deploy's states and its legal moves: one table, readable in a minute.

queued -> merging -> building -> deploying -> verifying -> merging_to_default -> succeeded
                 \\-> merge_conflict     \\-> build_failed   \\-> rolling_back -> rolled_back
                                                           rolling_back -> rollback_failed
merge_only: queued -> merging -> building -> merging_to_default -> merged
rollback (to an earlier release): queued -> deploying -> verifying -> succeeded
any state before deploying -> cancelled; build_failed -> abandoned; a step that
cannot go on for a reason other than a conflict or a red build -> failed (deploying
too, when nothing was touched: a missing image).
"""

from django.db import models


class Mode(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    MERGE_ONLY = "merge_only", "Merge without deploying"
    ROLLBACK = "rollback", "Roll back to an earlier release"


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
    # A rollback redeploys revisions that were built and merged long ago.
    Mode.ROLLBACK: frozenset(
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

# Moves only one mode makes: a rollback goes straight to deploying and ends after its soak.
MODE_ONLY_MOVES: dict[tuple[State, State], Mode] = {
    (S.QUEUED, S.DEPLOYING): Mode.ROLLBACK,
    (S.VERIFYING, S.SUCCEEDED): Mode.ROLLBACK,
}


def is_allowed(from_state: str, to_state: str, mode: str) -> bool:
    only_for = MODE_ONLY_MOVES.get((State(from_state), State(to_state)))
    return (
        to_state in TRANSITIONS[State(from_state)]
        and to_state not in NOT_IN_MODE[Mode(mode)]
        and (only_for is None or only_for == mode)
    )
