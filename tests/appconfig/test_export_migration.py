"""The plan exported: loading the export changes nothing, mid-migration too."""

import pytest
import yaml

from appconfig.apply import apply_app_config
from appconfig.export import export_app_config, export_app_config_data
from appconfig.parse import parse_app_config
from clusters.migration import move
from clusters.models import MigrationPhase, MigrationPlan, Placement
from tests.appconfig.files import with_plan


def three_phases(data):
    data["migration"]["proof"] = {"deploys": 0, "hours": 0}  # so a test can cut over at once
    data["services"].append(
        {
            "name": "poller",
            "process_type": "poller",
            "phase": 1,
            "placements": [
                {"cluster": "demo", "ecs_service": "demo-shop-poller", "container": "app"},
                {"legacy_job": "old-poller", "legacy_version": "2024.1"},
            ],
        }
    )
    data["migration"]["phases"].insert(1, {"name": "pollers", "services": ["poller"]})


def phases():
    return list(MigrationPhase.objects.values_list("position", "name", "state", "state_since"))


@pytest.mark.django_db
def test_a_plan_mid_migration_round_trips_and_keeps_its_states(application, user):
    apply_app_config(parse_app_config(with_plan(three_phases)))
    application.refresh_from_db()
    for name, state in (
        ("workers", "dual_running"),
        ("workers", "cut_over"),
        ("pollers", "dual_running"),
    ):
        move(MigrationPhase.objects.get(name=name), state, actor=user, reason="round trip")
    before = phases()
    assert [(p, n, s) for p, n, s, _ in before] == [
        (1, "workers", "cut_over"),
        (2, "pollers", "dual_running"),
        (3, "webs", "planned"),
    ]

    exported = export_app_config(application)
    data = yaml.safe_load(exported)
    assert data["migration"] == {
        "proof": {"deploys": 0, "hours": 0},
        "phases": [
            {"name": "workers", "services": ["worker"]},
            {"name": "pollers", "services": ["poller"]},
            {"name": "webs", "services": ["web"]},
        ],
    }
    poller = next(s for s in data["services"] if s["name"] == "poller")
    assert poller["placements"][1] == {"legacy_job": "old-poller", "legacy_version": "2024.1"}
    web = next(s for s in data["services"] if s["name"] == "web")
    assert web["placements"][1] == {"legacy_job": "old-web"}  # no version: none written

    report = apply_app_config(parse_app_config(exported))

    assert str(report) == "demo-shop: unchanged"
    assert phases() == before
    assert export_app_config(application) == exported


@pytest.mark.django_db
def test_a_done_phase_round_trips_with_its_retired_legacy_placement(application, user):
    apply_app_config(parse_app_config(with_plan(three_phases)))
    application.refresh_from_db()
    for state in ("dual_running", "cut_over", "done"):
        move(MigrationPhase.objects.get(name="workers"), state, actor=user, reason="done")
    retired = Placement.objects.get(legacy_job="old-worker")
    assert retired.retired_at is not None

    report = apply_app_config(parse_app_config(export_app_config(application)))

    assert not report.changed
    retired.refresh_from_db()
    assert retired.retired_at is not None
    assert MigrationPhase.objects.get(name="workers").state == "done"


@pytest.mark.django_db
def test_without_a_plan_there_is_no_migration_section(application):
    apply_app_config(parse_app_config(with_plan(lambda d: d.pop("migration"))))
    assert "migration" not in export_app_config_data(application)
    MigrationPlan.objects.create(application=application)  # a plan of no phases yet
    assert export_app_config_data(application)["migration"] == {
        "proof": {"deploys": 3, "hours": 24},
        "phases": [],
    }
