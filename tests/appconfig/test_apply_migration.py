"""The migration section applied: the plan made and changed, what a started phase refuses,
and placements a running deploy or a started phase uses."""

import pytest
from django.core.management import CommandError, call_command

from appconfig.apply import apply_app_config
from appconfig.errors import ConfigError
from appconfig.parse import parse_app_config
from clusters.migration import move
from clusters.models import MigrationPhase, MigrationPlan, Placement, Service
from deploys.models import Deploy, ServiceRollout
from tests.appconfig.files import changed, db_state, set_in, with_plan


def load(text, **options):
    return apply_app_config(parse_app_config(text), **options)


def plan_state(application) -> dict:
    """The plan, its phases and who is in each, and the legacy versions, as rows."""
    return {
        "plans": list(
            MigrationPlan.objects.values_list("application__slug", "proof_deploys", "proof_hours")
        ),
        "phases": list(
            MigrationPhase.objects.order_by("position").values_list(
                "id", "position", "name", "state", "state_since"
            )
        ),
        "members": sorted(
            Service.objects.filter(application=application).values_list(
                "name", "migration_phase__name"
            )
        ),
        "versions": sorted(Placement.objects.values_list("id", "legacy_job", "legacy_version")),
        "rows": db_state(application),
    }


def start(name, user, to_state="dual_running"):
    return move(MigrationPhase.objects.get(name=name), to_state, actor=user, reason="tests")


@pytest.mark.django_db
def test_a_plan_is_created_planned_in_the_files_order(application):
    report = load(with_plan())

    assert report.created[-3:] == [
        "migration plan (proof: 2 deploys and 1 h)",
        "migration phase 1 workers (planned): worker",
        "migration phase 2 webs (planned): web",
    ]
    plan = MigrationPlan.objects.get(application=application)
    assert (plan.proof_deploys, plan.proof_hours) == (2, 1)
    assert list(plan.phases.values_list("position", "name", "state")) == [
        (1, "workers", "planned"),
        (2, "webs", "planned"),
    ]
    assert dict(application.services.values_list("name", "migration_phase__name")) == {
        "worker": "workers",
        "web": "webs",
    }
    assert Placement.objects.get(legacy_job="old-worker").legacy_version == "v41"
    assert Placement.objects.get(legacy_job="old-web").legacy_version == ""

    again = load(with_plan())
    assert str(again) == "demo-shop: unchanged"


@pytest.mark.django_db
def test_planned_phases_follow_the_file(application):
    load(with_plan())
    workers = MigrationPhase.objects.get(name="workers")

    def edit(data):
        data["services"].append(
            {
                "name": "poller",
                "process_type": "poller",
                "placements": [
                    {"cluster": "demo", "ecs_service": "demo-shop-poller", "container": "app"},
                    {"legacy_job": "old-poller"},
                ],
            }
        )
        data["services"][0]["placements"][1]["legacy_version"] = "v42"
        data["migration"]["proof"] = {"deploys": 5, "hours": 12}
        data["migration"]["phases"] = [
            {"name": "everything", "services": ["web", "poller"]},
            {"name": "workers", "services": ["worker"]},
        ]

    report = load(with_plan(edit))

    assert report.removed == ["migration phase webs"]
    assert report.created == [
        "service poller (poller, phase 1)",
        "placement poller on demo/demo-shop-poller",
        "placement poller on legacy job old-poller",
        "migration phase 1 everything (planned): web, poller",
    ]
    assert report.updated == [
        "placement worker on legacy job old-worker: legacy_version 'v41' -> 'v42'",
        "migration plan: proof.deploys 2 -> 5; proof.hours 1 -> 12",
        "migration phase workers: position 1 -> 2",
    ]
    assert list(MigrationPhase.objects.values_list("id", "position", "name")) == [
        (workers.id + 2, 1, "everything"),
        (workers.id, 2, "workers"),
    ]
    assert dict(application.services.values_list("name", "migration_phase__name")) == {
        "worker": "workers",
        "web": "everything",
        "poller": "everything",
    }
    assert load(with_plan(edit)).changed is False


@pytest.mark.django_db
def test_a_service_joins_and_leaves_a_planned_phase(application):
    load(with_plan(lambda d: d["migration"]["phases"].pop()))

    report = load(with_plan(lambda d: d["migration"]["phases"].pop(0)))

    assert report.created == ["migration phase 1 webs (planned): web"]
    assert report.removed == ["migration phase workers"]
    assert report.updated == ["service worker: migration phase 'workers' -> none"]
    assert dict(application.services.values_list("name", "migration_phase__name")) == {
        "worker": None,
        "web": "webs",
    }


@pytest.mark.django_db
def test_a_plan_whose_phases_are_planned_can_be_removed(application):
    load(with_plan())

    report = load(changed(lambda d: None))

    assert report.removed == [
        "migration plan (2 phase(s))",
        "placement worker on legacy job old-worker",
        "placement web on legacy job old-web",
    ]
    assert not MigrationPlan.objects.exists()
    assert not MigrationPhase.objects.exists()
    assert not Service.objects.exclude(migration_phase=None).exists()


# Refusals: each names the phase and the service, and changes nothing.


def add_poller(data):
    """A second service in the first phase, so that one can leave it and leave it not empty."""
    data["services"].append(
        {
            "name": "poller",
            "process_type": "poller",
            "placements": [
                {"cluster": "demo", "ecs_service": "demo-shop-poller", "container": "app"},
                {"legacy_job": "old-poller"},
            ],
        }
    )
    data["migration"]["phases"][0]["services"].append("poller")


REFUSALS = [
    (
        "moving a service out of a started phase",
        lambda d: d["migration"]["phases"][1]["services"].append(
            d["migration"]["phases"][0]["services"].pop()
        ),
        [
            "migration.phases[1].services[1]: service 'poller' cannot leave phase 1 (workers), "
            "which is dual running (only a planned phase's services and place change with the "
            "file)",
        ],
    ),
    (
        "moving a service into a started phase",
        lambda d: d["migration"]["phases"][0]["services"].append(
            d["migration"]["phases"].pop()["services"][0]
        ),
        [
            "migration.phases[0].services[2]: service 'web' cannot join phase 1 (workers), "
            "which is dual running (only a planned phase's services and place change with the "
            "file)",
        ],
    ),
    (
        "removing a started phase",
        lambda d: d["migration"]["phases"].pop(0),
        [
            "migration.phases: phase 1 (workers), which is dual running, cannot be removed "
            "(only a planned phase's services and place change with the file): keep it in the "
            "file",
        ],
    ),
    (
        "putting a phase ahead of a started one",
        lambda d: d["migration"]["phases"].reverse(),
        [
            "migration.phases[1]: phase 1 (workers), which is dual running, must stay phase 1, "
            "not become phase 2 (only a planned phase's services and place change with the "
            "file)",
        ],
    ),
    (
        "removing the plan",
        lambda d: d.pop("migration"),
        [
            "migration: the plan cannot be removed while phase 1 (workers), which is dual "
            "running (only a planned phase's services and place change with the file): keep "
            "the migration section",
        ],
    ),
    (
        "removing a started phase's service",
        lambda d: (d["services"].pop(0), d["migration"]["phases"][0]["services"].pop(0)),
        [
            "placement worker on demo/demo-shop-worker cannot be removed while its service "
            "'worker' is in phase 1 (workers) of the migration plan, which is dual running: keep "
            "it in the file as it is",
            "placement worker on legacy job old-worker cannot be removed while its service "
            "'worker' is in phase 1 (workers) of the migration plan, which is dual running: keep "
            "it in the file as it is",
            "migration.phases[0]: service 'worker' cannot leave phase 1 (workers), which is dual "
            "running (only a planned phase's services and place change with the file)",
        ],
    ),
    (
        "changing the legacy job of a started phase's service",
        set_in(["services", 0, "placements", 1], {"legacy_job": "new-worker"}),
        [
            "placement worker on legacy job old-worker cannot be removed while its service "
            "'worker' is in phase 1 (workers) of the migration plan, which is dual running: keep "
            "it in the file as it is",
        ],
    ),
    (
        "moving a started phase's ECS placement to another service",
        lambda d: (
            d["services"][1]["placements"].append(d["services"][0]["placements"][0])
            or d["services"][0]["placements"].__setitem__(
                0, {"cluster": "demo", "ecs_service": "demo-shop-worker-2", "container": "app"}
            )
        ),
        [
            "placement worker on demo/demo-shop-worker cannot be moved to another service while "
            "its service 'worker' is in phase 1 (workers) of the migration plan, which is dual "
            "running: keep it in the file as it is",
        ],
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("what", "edit", "errors"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_what_a_started_phase_holds_is_refused_and_nothing_changes(
    application, user, what, edit, errors
):
    load(with_plan(add_poller))
    start("workers", user)
    before = plan_state(application)

    with pytest.raises(ConfigError) as caught:
        load(with_plan(lambda d: (add_poller(d), d.update(name="Renamed"), edit(d))))

    assert caught.value.errors == errors
    assert plan_state(application) == before


@pytest.mark.django_db
def test_a_placement_a_running_deploy_uses_is_not_removed(application, user):
    load(with_plan(lambda d: d.pop("migration")))
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", requester=user, state="deploying"
    )
    ServiceRollout.objects.create(
        deploy=deploy, placement=Placement.objects.get(legacy_job="old-web"), phase=2
    )
    before = plan_state(application)

    with pytest.raises(ConfigError) as caught:
        load(changed(lambda d: d["services"][1]["placements"].append({"legacy_job": "new-web"})))

    assert caught.value.errors == [
        f"placement web on legacy job old-web cannot be removed while deploy #{deploy.id} is "
        "rolling it out: keep it in the file as it is"
    ]
    assert plan_state(application) == before


@pytest.mark.django_db
def test_a_dry_run_shows_the_plans_changes_and_writes_nothing(application, user, capsys):
    load(with_plan())
    before = plan_state(application)

    def edit(data):
        data["migration"]["proof"]["hours"] = 48
        data["migration"]["phases"].reverse()

    report = load(with_plan(edit), dry_run=True)

    assert report.lines() == [
        "demo-shop: 0 created, 3 updated, 0 removed (dry run: nothing was written)",
        "  updated migration plan: proof.hours 1 -> 48",
        "  updated migration phase workers: position 1 -> 2",
        "  updated migration phase webs: position 2 -> 1",
    ]
    assert plan_state(application) == before


@pytest.mark.django_db
def test_the_commands_dry_run_says_the_plans_changes(application, user, tmp_path, capsys):
    load(with_plan())
    start("workers", user)
    path = tmp_path / "plan.yml"
    path.write_text(with_plan(lambda d: d["migration"]["phases"][1].update(name="front")))

    call_command("load_app_config", str(path), "--dry-run")

    out = capsys.readouterr().out
    assert out.splitlines() == [
        "demo-shop: 1 created, 0 updated, 1 removed (dry run: nothing was written)",
        "  created migration phase 2 front (planned): web",
        "  removed migration phase webs",
    ]
    assert MigrationPhase.objects.get(position=2).name == "webs"

    path.write_text(with_plan(lambda d: d.pop("migration")))
    with pytest.raises(CommandError) as caught:
        call_command("load_app_config", str(path), "--dry-run")
    assert (
        "1 error, nothing was changed:\n  migration: the plan cannot be removed while phase 1"
        in (str(caught.value))
    )
