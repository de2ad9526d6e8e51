"""When the next tick comes: after the poll, or at once after a target that waits on its own
changes (base.Target.waits) has started a placement or waited out a whole poll."""

from types import SimpleNamespace

from clusters.targets.base import Observation, Progress
from deploys import dispatch
from deploys.rollout import placements as p
from deploys.rollout.placements import R


def rows(*statuses):
    return [SimpleNamespace(pk=n, status=status) for n, status in enumerate(statuses, 1)]


def test_a_waiting_target_that_just_started_a_placement_is_looked_at_again_at_once(monkeypatch):
    monkeypatch.setattr(p, "target_of", lambda row: SimpleNamespace(waits=True))
    started = rows(R.UPDATING, R.DONE)

    assert p.look_again_at_once(started, {}) is True
    assert p.look_again_at_once(rows(R.ROLLING_BACK), {}) is True
    assert p.look_again_at_once(rows(R.DONE, R.PENDING), {}) is False


def test_after_an_observe_only_a_whole_wait_brings_the_next_tick_at_once(monkeypatch):
    monkeypatch.setattr(p, "target_of", lambda row: SimpleNamespace(waits=True))
    watched = rows(R.UPDATING)

    answered = {1: Observation(Progress.PROGRESSING)}
    waited = {1: Observation(Progress.PROGRESSING, waited=True)}
    assert p.look_again_at_once(watched, answered) is False  # answered early: the poll spaces
    assert p.look_again_at_once(watched, waited) is True


def test_a_target_that_does_not_wait_keeps_the_poll(monkeypatch):
    monkeypatch.setattr(p, "target_of", lambda row: SimpleNamespace())

    assert p.look_again_at_once(rows(R.UPDATING, R.ROLLING_BACK), {}) is False


def test_the_next_tick_is_sent_after_the_poll_or_at_once(sent_tasks):
    # sent_tasks (tests/conftest.py) keeps what goes with the poll's countdown in `later`.
    task = dispatch.STEP_TASKS[dispatch.State.DEPLOYING]

    dispatch.send_next_tick(7, "deploying")
    assert (sent_tasks.later, sent_tasks.sent) == ([(task, 7)], [])

    dispatch.send_next_tick(8, "deploying", at_once=True)
    assert (sent_tasks.later, sent_tasks.sent) == ([(task, 7)], [(task, 8)])
