"""When the next tick comes: after the poll, or at once after a target that waits on its own
changes (base.Target.waits) has started a placement or waited out a whole poll."""

from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from clusters.targets.base import Observation, Progress
from deploys import dispatch
from deploys.models import Deploy
from deploys.rollout import placements as p
from deploys.rollout import ticks
from deploys.rollout.placements import R
from deploys.states import State


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


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("soak_left", "countdown"),
    [(3.0, (2.0, 3.0)), (600.0, (10.0, 10.0)), (-5.0, (0.0, 0.0))],
)
def test_a_soak_ends_at_its_time_not_a_poll_late(
    soak_left, countdown, settings, sent_tasks, application, user
):
    # The last tick of a soak comes when it ends: the poll, or what is left of the soak if
    # that is less (at once once it is over).
    settings.FC_ROLLOUT_POLL_SECONDS = 10
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/soaking",
        requester=user,
        state=State.VERIFYING,
        started_at=timezone.now(),
        verify_until=timezone.now() + timedelta(seconds=soak_left),
    )

    ticks.tick(deploy, lambda soaking: False)

    assert sent_tasks.later == [(dispatch.STEP_TASKS[State.VERIFYING], deploy.pk)]
    low, high = countdown
    assert low <= sent_tasks.countdowns[0] <= high


@pytest.mark.django_db
def test_other_watching_steps_keep_the_poll(settings, sent_tasks, application, user):
    settings.FC_ROLLOUT_POLL_SECONDS = 10
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/rolling",
        requester=user,
        state=State.DEPLOYING,
        started_at=timezone.now(),
        verify_until=timezone.now() + timedelta(seconds=1),
    )

    ticks.tick(deploy, lambda deploying: False)

    assert sent_tasks.countdowns == [10.0]
