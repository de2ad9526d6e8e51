"""The demo's migration plan: what its file says, and `manage.py demo` putting it mid-way.

Phase 1 (the mailer) cut over, phase 2 (the worker) dual running, the pollers and the static
files and webs planned, with past moves by demo engineers; only for a new plan, so loading
the demo again changes nothing.
"""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from clusters.migration import in_use
from clusters.models import MigrationMove, MigrationPhase, MigrationPlan, MigrationState, Placement
from deploys.models import Application
from devtools.demo import DEMO_SLUG, demo_config
from devtools.demo_migration import HISTORY, PEOPLE, put_mid_migration

S = MigrationState


def snapshot(app: Application) -> dict:
    plan = app.migration_plan
    return {
        "plan": (plan.pk, plan.proof_deploys, plan.proof_hours),
        "phases": [
            (
                p.pk,
                p.position,
                p.name,
                p.state,
                p.state_since,
                sorted(s.name for s in p.services.all()),
            )
            for p in plan.phases.order_by("position")
        ],
        "moves": [
            (m.pk, m.phase.position, m.from_state, m.to_state, m.actor_name, m.reason, m.at)
            for m in MigrationMove.objects.filter(phase__plan=plan)
        ],
    }


def test_the_demo_plan_goes_from_the_low_risk_process_to_the_webs():
    migration = demo_config().migration
    assert [(phase.name, list(phase.services)) for phase in migration.phases] == [
        ("low-risk", ["mailer"]),
        ("workers", ["worker"]),
        ("pollers", ["poller"]),
        ("static and webs", ["static", "web"]),
    ]
    assert (migration.proof_deploys, migration.proof_hours) == (2, 0)


def test_manage_py_demo_puts_a_new_plan_mid_migration_and_a_rerun_changes_nothing(
    db, settings, tmp_path, capsys
):
    settings.VAR_DIR = tmp_path
    before = timezone.now()
    call_command("demo")
    out = capsys.readouterr().out
    app = Application.objects.get(slug=DEMO_SLUG)

    first = snapshot(app)
    assert [(position, name, state) for _pk, position, name, state, _at, _s in first["phases"]] == [
        (1, "low-risk", S.CUT_OVER),
        (2, "workers", S.DUAL_RUNNING),
        (3, "pollers", S.PLANNED),
        (4, "static and webs", S.PLANNED),
    ]
    assert [(m[1], m[2], m[3], m[4]) for m in first["moves"]] == [
        (1, S.PLANNED, S.DUAL_RUNNING, "priya"),
        (1, S.DUAL_RUNNING, S.CUT_OVER, "priya"),
        (2, S.PLANNED, S.DUAL_RUNNING, "tomasz"),
    ]
    times = [m[6] for m in first["moves"]]
    assert times == sorted(times) and times[-1] < before - timedelta(days=1)  # weeks ago
    assert all(m[5] for m in first["moves"])  # each with its reason
    moves = MigrationMove.objects.filter(phase__plan=app.migration_plan)
    assert {(m.actor.username, m.actor.has_usable_password()) for m in moves} == {
        ("priya", False),
        ("tomasz", False),
    }
    phases = {p.position: p for p in app.migration_plan.phases.all()}
    assert phases[1].state_since == times[1] and phases[2].state_since == times[2]
    assert "phase 2 (workers): dual running" in out

    # Where a deploy goes now: the mailer to ECS, the worker to both sides, the rest legacy.
    used = sorted(
        (p.service.name, p.kind)
        for p in Placement.objects.filter(service__application=app).select_related(
            "service__migration_phase"
        )
        if in_use(p)
    )
    assert used == [
        ("mailer", "ecs"),
        ("poller", "legacy"),
        ("static", "legacy"),
        ("web", "legacy"),
        ("worker", "ecs"),
        ("worker", "legacy"),
    ]

    call_command("demo")
    assert "mid-migration" not in capsys.readouterr().out
    assert snapshot(app) == first


def test_a_plan_someone_has_moved_is_left_as_it_is(db, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("demo")
    plan = MigrationPlan.objects.get(application__slug=DEMO_SLUG)
    # As if a person had only just started phase 1 and nothing else.
    started = plan.phases.get(position=1).moves.first()
    MigrationMove.objects.filter(phase__plan=plan).exclude(pk=started.pk).delete()
    plan.phases.update(state=S.PLANNED)
    plan.phases.filter(position=1).update(state=S.DUAL_RUNNING)
    kept = snapshot(plan.application)

    assert put_mid_migration(plan) == []
    call_command("demo")
    assert snapshot(plan.application) == kept


def test_the_demo_history_moves_each_phase_one_step_at_a_time():
    """The history is written, not made by move(), so it must keep move()'s order itself."""
    order = [S.PLANNED, S.DUAL_RUNNING, S.CUT_OVER, S.DONE]
    states: dict[int, str] = {}
    for past in HISTORY:
        state = states.get(past.position, S.PLANNED)
        assert order.index(past.to_state) == order.index(state) + 1, past
        if past.to_state == S.DUAL_RUNNING and past.position > 1:
            assert states.get(past.position - 1) in (S.CUT_OVER, S.DONE), past
        states[past.position] = past.to_state
        assert past.who in PEOPLE and past.reason
    assert [m.days_ago for m in HISTORY] == sorted((m.days_ago for m in HISTORY), reverse=True)


def test_put_mid_migration_refuses_a_plan_without_the_phases_it_moves(db, application):
    plan = MigrationPlan.objects.create(application=application)
    MigrationPhase.objects.create(plan=plan, position=1, name="only one")
    with pytest.raises(ValueError, match=r"moves phase\(s\) \[2\]"):
        put_mid_migration(plan)
    assert not MigrationMove.objects.exists()
    assert plan.phases.get().state == S.PLANNED
