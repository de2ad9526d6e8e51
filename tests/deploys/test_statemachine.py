import pytest
from django.db import transaction

from deploys.models import Deploy, DeployEvent
from deploys.statemachine import IllegalTransition, transition
from deploys.states import (
    FINAL_STATES,
    MODE_ONLY_MOVES,
    NOT_IN_MODE,
    SLOT_STATES,
    TRANSITIONS,
    Mode,
    State,
)


def make_deploy(application, user, state, mode=Mode.DEPLOY) -> Deploy:
    # A deploy put straight into a state, to test the moves out of it.
    return Deploy.objects.create(
        application=application, branch="feature/x", mode=mode, requester=user, state=state
    )


def test_the_table_names_every_state_once_and_final_states_lead_nowhere():
    assert set(TRANSITIONS) == set(State)
    for final in FINAL_STATES:
        assert TRANSITIONS[final] == frozenset()
    assert not (SLOT_STATES & FINAL_STATES)
    assert State.QUEUED not in SLOT_STATES


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("from_state", list(State))
def test_every_move_is_allowed_exactly_when_the_table_says(application, user, mode, from_state):
    for to_state in State:
        if to_state == from_state:
            continue
        only_for = MODE_ONLY_MOVES.get((from_state, to_state))
        legal = (
            to_state in TRANSITIONS[from_state]
            and to_state not in NOT_IN_MODE[mode]
            and only_for in (None, mode)
        )
        with transaction.atomic():
            deploy = make_deploy(application, user, from_state, mode)
            if legal:
                moved, changed = transition(deploy.pk, to_state, actor=user, message="why")
                assert changed
                assert moved.state == to_state
                deploy.refresh_from_db()
                assert deploy.state == to_state
                event = deploy.events.get()
                assert (event.from_state, event.to_state, event.actor, event.message) == (
                    from_state,
                    to_state,
                    user,
                    "why",
                )
                assert (deploy.finished_at is not None) == (to_state in FINAL_STATES)
            else:
                with pytest.raises(IllegalTransition, match=f"deploy #{deploy.pk}"):
                    transition(deploy.pk, to_state)
                deploy.refresh_from_db()
                assert deploy.state == from_state
                assert not deploy.events.exists()
            transaction.set_rollback(True)


def test_a_second_identical_call_is_a_no_op(application, user):
    deploy = make_deploy(application, user, State.QUEUED)
    first, changed_first = transition(deploy.pk, State.MERGING, message="took the slot")
    second, changed_second = transition(deploy.pk, State.MERGING, message="took the slot")
    assert (changed_first, changed_second) == (True, False)
    assert first.state == second.state == State.MERGING
    assert DeployEvent.objects.filter(deploy=deploy).count() == 1


def test_from_states_refuses_a_move_the_table_allows(application, user):
    deploy = make_deploy(application, user, State.BUILDING)
    with pytest.raises(IllegalTransition, match="is building: it cannot move to cancelled"):
        transition(deploy.pk, State.CANCELLED, from_states=frozenset({State.QUEUED}))
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING


def test_leaving_the_queue_stamps_the_start_and_extra_fields_are_written(application, user):
    deploy = make_deploy(application, user, State.QUEUED)
    transition(deploy.pk, State.MERGING)
    moved, _ = transition(deploy.pk, State.BUILDING, candidate_sha="a" * 40)
    assert moved.started_at is not None
    deploy.refresh_from_db()
    assert deploy.candidate_sha == "a" * 40


def test_a_final_state_hands_the_slot_on_after_commit(
    application, user, django_capture_on_commit_callbacks
):
    holder = make_deploy(application, user, State.MERGING_TO_DEFAULT)
    waiting = Deploy.objects.create(application=application, branch="feature/y", requester=user)
    with django_capture_on_commit_callbacks(execute=True):
        transition(holder.pk, State.SUCCEEDED)
    waiting.refresh_from_db()
    assert waiting.state == State.MERGING
