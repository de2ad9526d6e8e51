"""What each state means (deploys.states.MEANING): every state has all of it, it agrees with
the table, and the pages offer exactly the buttons allowed_actions says."""

import re

import pytest
from celery import current_app

import builds.tasks  # noqa: F401 - registers the step tasks named in MEANING
import deploys.tasks  # noqa: F401
from clusters.models import Cluster, Placement, Service
from deploys import notify
from deploys.actions import allowed_actions
from deploys.models import Deploy, RolloutStatus, ServiceRollout
from deploys.states import (
    FINAL_STATES,
    MEANING,
    SLOT_STATES,
    TRANSITIONS,
    Action,
    Meaning,
    Mode,
    State,
    states_allowing,
)

BARS = {"merge", "build", "phase", "soak", "merge-to-default", ""}


def test_every_state_means_something_and_nothing_else_does():
    assert set(MEANING) == set(State)
    for state, meaning in MEANING.items():
        assert isinstance(meaning, Meaning), state
        assert state.label, state  # its words on the pages
        assert meaning.bar in BARS, state
        assert isinstance(meaning.actions, frozenset), state
        assert all(isinstance(action, Action) for action in meaning.actions), state
    assert len({state.label for state in State}) == len(State)


@pytest.mark.parametrize("state", list(State))
def test_a_state_has_a_step_exactly_when_it_holds_the_slot_and_does_not_wait(state):
    meaning = MEANING[state]
    waits = state in (State.QUEUED, State.BUILD_FAILED) or state in FINAL_STATES
    assert (meaning.step is None) == waits
    if meaning.step:
        assert state in SLOT_STATES
        assert meaning.step in current_app.tasks, meaning.step
    if meaning.watches:
        assert meaning.step


@pytest.mark.parametrize("state", list(State))
def test_what_chat_is_told_names_a_known_kind_and_real_moves(state):
    said = MEANING[state].said
    if said is None:
        return
    assert said.kind in notify._EMOJI
    assert said.words
    for before in said.unless_from:
        assert state in TRANSITIONS[before], f"{before} never moves to {state}"


def test_final_states_offer_nothing_but_a_restore_of_a_release():
    for state in FINAL_STATES - {State.SUCCEEDED}:
        assert MEANING[state].actions == frozenset(), state
    assert states_allowing(Action.RESTORE) == {State.SUCCEEDED}


def test_each_action_is_offered_only_where_the_table_lets_it_move():
    goes_to = {
        Action.CANCEL: State.CANCELLED,
        Action.ABANDON: State.ABANDONED,
        Action.RETRY_BUILD: State.BUILDING,
    }
    for action, to_state in goes_to.items():
        for state in states_allowing(action):
            assert to_state in TRANSITIONS[state], (action, state)


# --- the pages offer what allowed_actions says ----------------------------------------------


def button_actions(html: str) -> set[str]:
    return set(re.findall(r'<form method="post" action="/deploys/\d+/([a-z-]+)/"', html))


@pytest.fixture
def placement(application):
    service = Service.objects.create(application=application, name="web", phase=1)
    cluster = Cluster.objects.create(name="prod-eu", region="eu-west-1")
    return Placement.objects.create(service=service, cluster=cluster, ecs_service_name="shop-web")


def in_state(application, user, state, placement=None) -> Deploy:
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", mode=Mode.DEPLOY, requester=user, state=state
    )
    if placement is not None:
        ServiceRollout.objects.create(
            deploy=deploy, placement=placement, phase=1, status=RolloutStatus.DONE
        )
    return deploy


@pytest.mark.parametrize("state", list(State))
def test_the_deploy_page_offers_exactly_the_allowed_actions(
    client, user, application, placement, state
):
    client.force_login(user)
    deploy = in_state(application, user, state, placement)
    allowed = allowed_actions(deploy, user)
    assert allowed == MEANING[state].actions
    html = client.get(f"/deploys/{deploy.pk}/").content.decode()
    assert button_actions(html) == {action.value for action in allowed}


def test_a_release_that_rolled_nothing_out_offers_no_restore(client, user, application):
    client.force_login(user)
    release = in_state(application, user, State.SUCCEEDED)
    assert allowed_actions(release, user) == frozenset()
    assert button_actions(client.get(f"/deploys/{release.pk}/").content.decode()) == set()
