"""The rules of a migration plan (clusters/migration.py): a phase moves one step at a time, in
order, proven, with a reason; every refusal says why and changes nothing; done retires the
legacy side for good; and which placements a deploy touches in each state."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from clusters import migration, targets
from clusters.migration import MigrationRefused
from clusters.models import (
    Cluster,
    MigrationMove,
    MigrationPhase,
    MigrationState,
    Placement,
    PlacementKind,
    ProcessType,
    Service,
)
from deploys.models import Application
from deploys.rollout.placements import rollout_placements
from deploys.states import State
from tests.migration_world import deploy_of, make_world, prove

S = MigrationState
pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("sam", password="x", is_staff=True)


def snapshot(world) -> tuple:
    """Everything a move may change: the phases, the moves, the placements' retirement."""
    return (
        list(MigrationPhase.objects.filter(plan=world.plan).values_list("state", "state_since")),
        MigrationMove.objects.count(),
        list(Placement.objects.order_by("id").values_list("id", "retired_at")),
    )


def refused(world, phase, to_state, user, *, reason="because", force=False) -> str:
    """The message of a refused move, checked to have changed nothing."""
    before = snapshot(world)
    with pytest.raises(MigrationRefused) as caught:
        migration.move(phase, to_state, actor=user, reason=reason, force=force)
    assert snapshot(world) == before
    return str(caught.value)


@pytest.fixture
def both_targets(monkeypatch):
    """Both kinds driven, whether or not clusters/targets/legacy.py has landed: these tests
    are about which side a state says, not about the targets."""
    monkeypatch.setattr(targets, "drives", lambda kind: kind in ("ecs", "legacy"))


def in_use_names(application) -> set[tuple[str, str]]:
    return {(p.service.name, p.kind) for p in rollout_placements(application)}


# --- the walk ------------------------------------------------------------------------------


def test_a_plan_of_four_phases_is_walked_to_done_phase_by_phase(world, user, both_targets):
    for position in range(1, 5):
        phase = world.phase(position)
        migration.move(phase, S.DUAL_RUNNING, actor=user, reason=f"start {position}")
        prove(world, user, position)
        migration.move(world.phase(position), S.CUT_OVER, actor=user, reason=f"cut {position}")
        migration.move(world.phase(position), S.DONE, actor=user, reason=f"end {position}")
        assert world.phase(position).state == S.DONE

    moves = list(MigrationMove.objects.order_by("id"))
    assert [(m.phase.position, m.from_state, m.to_state) for m in moves] == [
        (position, before, after)
        for position in range(1, 5)
        for before, after in [
            (S.PLANNED, S.DUAL_RUNNING),
            (S.DUAL_RUNNING, S.CUT_OVER),
            (S.CUT_OVER, S.DONE),
        ]
    ]
    assert {m.actor_name for m in moves} == {user.username}
    assert moves[0].reason == "start 1" and not any(m.forced for m in moves)
    # Every legacy placement is retired; only the ECS side is deployed now.
    assert not Placement.objects.filter(kind=PlacementKind.LEGACY, retired_at=None).exists()
    assert in_use_names(world.application) == {(name, "ecs") for name in world.services}


def test_a_move_records_who_when_and_why_and_the_state_since(world, user):
    before = timezone.now()
    record = migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="  cron first  ")
    phase = world.phase(1)
    assert (record.actor, record.actor_name, record.reason) == (user, "alice", "cron first")
    assert phase.state == S.DUAL_RUNNING and phase.state_since == record.at >= before


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize("to_state", [S.CUT_OVER, S.DONE, S.PLANNED, "flying"])
def test_a_phase_moves_one_step_on_only(world, user, to_state):
    message = refused(world, world.phase(1), to_state, user)
    if to_state == "flying":
        assert message == "'flying' is not a phase state: planned, dual_running, cut_over or done"
    else:
        assert message.startswith("phase 1 (low-risk) is planned: it can move to dual running")
        assert f"not to {S(to_state).label.lower()}" in message


def test_a_phase_far_down_the_plan_names_the_nearest_phase_in_its_way(world, user):
    message = refused(world, world.phase(4), S.DUAL_RUNNING, user)
    assert message.startswith("phase 3 (pollers) is planned: a phase starts dual running")


def test_a_service_with_no_ecs_placement_cannot_be_cut_over(user):
    world = make_world(proof_deploys=0, proof_hours=0)
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    world.ecs["cron"].delete()
    message = refused(world, world.phase(1), S.CUT_OVER, user)
    assert message == "cron has no ECS placement to cut over to"


def test_a_move_needs_a_reason(world, user):
    for reason in ("", "   ", None):
        assert refused(world, world.phase(1), S.DUAL_RUNNING, user, reason=reason) == (
            "say why: a move needs a reason"
        )
    long = refused(world, world.phase(1), S.DUAL_RUNNING, user, reason="x" * 1001)
    assert long == "the reason is longer than 1000 characters"


def test_phase_two_waits_for_phase_one_to_be_cut_over(world, user):
    message = refused(world, world.phase(2), S.DUAL_RUNNING, user)
    assert message == (
        "phase 1 (low-risk) is planned: a phase starts dual running only once the one ahead "
        "of it is cut over"
    )
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    assert "phase 1 (low-risk) is dual running" in refused(
        world, world.phase(2), S.DUAL_RUNNING, user
    )
    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="proven")
    migration.move(world.phase(2), S.DUAL_RUNNING, actor=user, reason="workers next")
    assert world.phase(2).state == S.DUAL_RUNNING


def test_staff_may_force_a_phase_out_of_order_with_a_reason(world, user, staff):
    assert "only staff may force" in refused(
        world, world.phase(2), S.DUAL_RUNNING, user, force=True
    )
    assert refused(world, world.phase(2), S.DUAL_RUNNING, staff, reason="", force=True) == (
        "say why: a move needs a reason"
    )
    record = migration.move(
        world.phase(2), S.DUAL_RUNNING, actor=staff, reason="workers are urgent", force=True
    )
    assert record.forced and record.actor_name == "sam"
    assert world.phase(2).state == S.DUAL_RUNNING


def test_force_is_not_recorded_when_no_rule_was_overridden(world, staff):
    record = migration.move(world.phase(1), S.DUAL_RUNNING, actor=staff, reason="go", force=True)
    assert not record.forced


def test_force_does_not_skip_the_proof(world, staff):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=staff, reason="go")
    message = refused(world, world.phase(1), S.CUT_OVER, staff, force=True)
    assert message.startswith("the ECS side is not proven yet: cron: 0 of 3 deploys")


def test_cut_over_needs_enough_deploys(world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    prove(world, user, 1, deploys=2)
    assert refused(world, world.phase(1), S.CUT_OVER, user) == (
        "the ECS side is not proven yet: cron: 2 of 3 deploys"
    )
    prove(world, user, 1, deploys=1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="three deploys and a day")
    assert world.phase(1).state == S.CUT_OVER


def test_cut_over_needs_enough_hours(world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    prove(world, user, 1, hours=5)
    message = refused(world, world.phase(1), S.CUT_OVER, user)
    assert message == "the ECS side is not proven yet: cron: 5.0 of 24 h"


def test_only_succeeded_deploys_with_the_ecs_side_out_since_dual_running_count(world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    ecs, legacy = world.ecs["cron"], world.legacy["cron"]
    deploy_of(world, user, [ecs], state=State.ROLLED_BACK, status="rolled_back")
    deploy_of(world, user, [legacy])  # the legacy side only: no proof of ECS
    old = deploy_of(world, user, [ecs])  # before dual running began, below
    old.rollouts.update(finished_at=timezone.now() - timedelta(days=3))
    MigrationPhase.objects.filter(pk=world.phase(1).pk).update(
        state_since=timezone.now() - timedelta(days=2)
    )
    (proof,) = migration.proof_of(world.phase(1))
    assert (proof.service, proof.deploys, proof.proven) == ("cron", 0, False)


def test_a_phase_of_two_services_is_proven_by_the_least_proven(user):
    world = make_world(proof_deploys=1, proof_hours=0)
    for position in (1, 2, 3):
        migration.move(world.phase(position), S.DUAL_RUNNING, actor=user, reason="go")
        prove(world, user, position)
        migration.move(world.phase(position), S.CUT_OVER, actor=user, reason="go")
    migration.move(world.phase(4), S.DUAL_RUNNING, actor=user, reason="webs")
    deploy_of(world, user, [world.ecs["static"]])
    assert refused(world, world.phase(4), S.CUT_OVER, user) == (
        "the ECS side is not proven yet: web: 0 of 1 deploys"
    )
    deploy_of(world, user, [world.ecs["web"]])
    migration.move(world.phase(4), S.CUT_OVER, actor=user, reason="both out")


def test_dual_running_needs_an_ecs_placement(user):
    world = make_world(phases=(("cron only", [("cron", ProcessType.OTHER)]),))
    world.ecs["cron"].rollouts.all().delete()
    world.ecs["cron"].delete()
    assert refused(world, world.phase(1), S.DUAL_RUNNING, user) == (
        "cron has no ECS placement to run on"
    )


def test_done_waits_for_a_deploy_in_flight_on_the_legacy_side(world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="go")
    flying = deploy_of(
        world, user, [world.ecs["cron"], world.legacy["cron"]], state=State.DEPLOYING
    )
    assert refused(world, world.phase(1), S.DONE, user) == (
        f"deploy #{flying.pk} is still using the legacy side: wait until it has finished"
    )
    flying.state = State.SUCCEEDED
    flying.save(update_fields=["state"])
    migration.move(world.phase(1), S.DONE, actor=user, reason="the job is gone")
    assert world.phase(1).state == S.DONE


def test_nothing_comes_after_done(world, user):
    for to_state, reason in ((S.DUAL_RUNNING, "a"), (S.CUT_OVER, "b"), (S.DONE, "c")):
        if to_state == S.CUT_OVER:
            prove(world, user, 1)
        migration.move(world.phase(1), to_state, actor=user, reason=reason)
    assert refused(world, world.phase(1), S.DONE, user) == (
        "phase 1 (low-risk) is done: it cannot move to done"
    )
    assert migration.blockers(world.phase(1)) == [
        "phase 1 (low-risk) is done: there is nothing after done"
    ]


# --- which placements a deploy touches -----------------------------------------------------


def test_each_state_says_which_side_a_deploy_touches(world, user, both_targets):
    cron = {("cron", "ecs"), ("cron", "legacy")}
    assert in_use_names(world.application) == {(n, "legacy") for n in world.services}

    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    touched = in_use_names(world.application)
    assert cron <= touched and ("worker", "ecs") not in touched

    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="go")
    touched = in_use_names(world.application)
    assert ("cron", "ecs") in touched and ("cron", "legacy") not in touched
    # Cut over keeps the legacy placement, unused; done retires it.
    assert Placement.objects.get(pk=world.legacy["cron"].pk).retired_at is None

    migration.move(world.phase(1), S.DONE, actor=user, reason="go")
    retired = Placement.objects.get(pk=world.legacy["cron"].pk)
    assert retired.retired_at is not None
    assert Placement.objects.filter(kind=PlacementKind.LEGACY, retired_at=None).count() == 4
    assert ("cron", "legacy") not in in_use_names(world.application)


def test_a_retired_placement_is_never_used_again(world, user, both_targets):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="go")
    migration.move(world.phase(1), S.DONE, actor=user, reason="go")
    # Even if someone put the phase back by hand, the retired side stays out.
    MigrationPhase.objects.filter(pk=world.phase(1).pk).update(state=S.DUAL_RUNNING)
    touched = in_use_names(world.application)
    assert ("cron", "ecs") in touched and ("cron", "legacy") not in touched


def test_a_service_in_no_plan_keeps_its_ecs_placements_only(db, both_targets):
    application = Application.objects.create(slug="plain", name="Plain", git_remote_url="/x")
    cluster = Cluster.objects.create(name="c1")
    service = Service.objects.create(
        application=application, name="web", process_type=ProcessType.WEB
    )
    ecs = Placement.objects.create(service=service, cluster=cluster, ecs_service_name="web")
    Placement.objects.create(service=service, kind=PlacementKind.LEGACY, legacy_job="deploy-web")
    assert rollout_placements(application) == [ecs]
