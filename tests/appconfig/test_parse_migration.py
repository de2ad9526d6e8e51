"""The migration section and legacy_version: what parses, and each error by its path."""

import pytest
import yaml

from appconfig.parse import parse_app_config
from appconfig.schema import MigrationPhaseConfig
from tests.appconfig.files import ROOT, changed, errors_of, set_in, with_plan


def test_a_plan_parses_in_order_with_its_proof():
    config = parse_app_config(with_plan())
    assert config.migration.proof_deploys == 2
    assert config.migration.proof_hours == 1
    assert config.migration.phases == [
        MigrationPhaseConfig(name="workers", services=("worker",)),
        MigrationPhaseConfig(name="webs", services=("web",)),
    ]
    worker = config.services[0]
    assert [(p.kind, p.legacy_job, p.legacy_version) for p in worker.placements] == [
        ("ecs", "", ""),
        ("legacy", "old-worker", "v41"),
    ]
    assert config.services[1].placements[1].legacy_version == ""
    assert config.warnings == []


def test_no_section_is_no_plan_and_the_proof_has_its_defaults():
    assert parse_app_config(changed(lambda d: None)).migration is None
    config = parse_app_config(with_plan(lambda d: d["migration"].pop("proof")))
    assert (config.migration.proof_deploys, config.migration.proof_hours) == (3, 24)
    zero = parse_app_config(with_plan(set_in(["migration", "proof"], {"deploys": 0, "hours": 0})))
    assert (zero.migration.proof_deploys, zero.migration.proof_hours) == (0, 0)


def phases(*items):
    return set_in(["migration", "phases"], list(items))


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            set_in(["migration", "stages"], []),
            "migration.stages: unknown key (known keys: proof, phases)",
        ),
        (lambda d: d["migration"].pop("phases"), "migration.phases: required"),
        (set_in(["migration"], ["workers"]), "migration: must be a mapping, not a list"),
        (
            set_in(["migration", "proof", "deploy"], 3),
            "migration.proof.deploy: unknown key (did you mean 'deploys'?)",
        ),
        (
            set_in(["migration", "proof", "deploys"], -1),
            "migration.proof.deploys: must be a whole number of at least 0, not -1",
        ),
        (
            set_in(["migration", "proof", "hours"], 1.5),
            "migration.proof.hours: must be a whole number, not the number 1.5",
        ),
        (
            set_in(["migration", "proof", "hours"], "24h"),
            "migration.proof.hours: must be a whole number, not str '24h'",
        ),
        (
            phases(),
            "migration.phases: a plan needs at least one phase (leave migration out for no plan)",
        ),
        (
            phases({"name": "all", "services": []}),
            "migration.phases[0].services: a phase needs at least one service",
        ),
        (
            phases({"name": "all", "services": "worker"}),
            "migration.phases[0].services: must be a list of service names, not str 'worker'",
        ),
        (phases({"services": ["worker"]}), "migration.phases[0].name: required"),
        (
            phases({"name": "all", "services": ["worker"], "state": "done"}),
            "migration.phases[0].state: unknown key",
        ),
        (
            phases(
                {"name": "first", "services": ["worker"]}, {"name": "first", "services": ["web"]}
            ),
            "migration.phases[1].name: 'first' is already the name of migration.phases[0]",
        ),
        (
            phases({"name": "workers", "services": ["wroker"]}),
            "migration.phases[0].services[0]: no service 'wroker' under services "
            "(did you mean 'worker'?)",
        ),
        (
            phases(
                {"name": "workers", "services": ["worker"]},
                {"name": "everything", "services": ["web", "worker"]},
            ),
            "migration.phases[1].services[1]: 'worker' is already in phase 'workers': "
            "one phase a service",
        ),
        (
            phases({"name": "workers", "services": ["worker", "worker"]}),
            "migration.phases[0].services[1]: 'worker' is already in phase 'workers'",
        ),
        (
            lambda d: d["services"][0]["placements"].pop(),
            "migration.phases[0].services[0]: service 'worker' has no legacy placement: a "
            "service in the plan moves from its legacy job to ECS, so it needs both a legacy "
            "placement and an ECS one",
        ),
        (
            lambda d: d["services"][1]["placements"].pop(0),
            "migration.phases[1].services[0]: service 'web' has no ECS placement: ",
        ),
        (
            set_in(["services", 1, "placements"], []),
            "migration.phases[1].services[0]: service 'web' has no legacy placement and no "
            "ECS placement: ",
        ),
        (
            set_in(["services", 0, "placements", 0, "legacy_version"], "v1"),
            "services[0].placements[0].legacy_version: is for a legacy placement: give it "
            "beside a legacy_job",
        ),
        (
            set_in(["services", 0, "placements", 1, "legacy_version"], 41),
            "services[0].placements[1].legacy_version: must be a string, not the number 41",
        ),
        (
            set_in(["services", 0, "placements", 1, "legacy_version"], "v" * 201),
            "services[0].placements[1].legacy_version: must be at most 200 characters",
        ),
    ],
)
def test_each_bad_plan_is_named_by_its_path(change, error):
    errors = errors_of(with_plan(change))
    assert any(e == error or e.startswith(error) for e in errors), errors


def test_a_bad_service_is_not_reported_again_by_the_plan():
    errors = errors_of(with_plan(set_in(["services", 0, "process_type"], "wrker")))
    assert [e.split(":")[0] for e in errors] == ["services[0].process_type"], errors


def test_every_plan_error_is_reported_with_the_others():
    def many(data):
        data["migration"]["proof"]["deploys"] = "three"
        data["migration"]["phases"][1]["services"] = ["worker", "cron"]
        data["colour"] = "blue"

    errors = errors_of(with_plan(many))
    assert [e.split(":")[0] for e in errors] == [
        "colour",
        "migration.proof.deploys",
        "migration.phases[1].services[0]",
        "migration.phases[1].services[1]",
    ], errors


def test_the_documented_migration_section_parses():
    docs = (ROOT / "docs" / "app-config.md").read_text()
    block = next(b for b in docs.split("```yaml\n")[1:] if b.startswith("migration:"))
    section = yaml.safe_load(block.split("```", 1)[0])["migration"]

    def add(data):
        data["services"] = [
            {
                "name": name,
                "process_type": "worker",
                "placements": [
                    {"cluster": "demo", "ecs_service": f"shop-{name}", "container": "app"},
                    {"legacy_job": f"old-{name}"},
                ],
            }
            for name in ("cron", "worker", "mailer")
        ]
        data["migration"] = section

    plan = parse_app_config(changed(add)).migration
    assert [(p.name, p.services) for p in plan.phases] == [
        ("low-risk", ("cron",)),
        ("workers", ("worker", "mailer")),
    ]
    assert (plan.proof_deploys, plan.proof_hours) == (3, 24)
