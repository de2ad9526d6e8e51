import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from clusters.config import (
    ConfigError,
    apply_app_config,
    export_app_config,
    export_app_config_data,
    format_duration,
    parse_app_config,
    parse_duration,
)
from clusters.models import Cluster, Placement, Service
from deploys.models import Application, Deploy, ServiceRollout

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "demo-shop.fatcontroller.yml"

# A small valid file, changed by each case below.
BASE = {
    "application": "demo-shop",
    "build": {"backend": "local", "command": "sh build.sh", "timeout": "30m"},
    "rollout": {"soak": "60s"},
    "clusters": {"demo": {"region": "us-east-1"}},
    "services": [
        {
            "name": "worker",
            "process_type": "worker",
            "phase": 1,
            "placements": [
                {"cluster": "demo", "ecs_service": "demo-shop-worker", "container": "app"}
            ],
        },
        {
            "name": "web",
            "process_type": "web",
            "phase": 2,
            "placements": [{"cluster": "demo", "ecs_service": "demo-shop-web", "container": "app"}],
        },
    ],
}


def changed(change) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_app_config(text)
    return caught.value.errors


def example_text() -> str:
    return EXAMPLE.read_text()


def edited_example(edit) -> str:
    data = yaml.safe_load(example_text())
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def db_state(application) -> dict:
    """Everything a file can set, as rows, to show that nothing changed."""
    application.refresh_from_db()
    return {
        "application": {f.name: getattr(application, f.name) for f in Application._meta.fields},
        "clusters": sorted(Cluster.objects.values_list("name", "region", "arn")),
        "services": sorted(
            Service.objects.values_list("id", "application_id", "name", "process_type", "phase")
        ),
        "placements": sorted(
            Placement.objects.values_list(
                "id", "service_id", "kind", "cluster_id", "ecs_service_name", "container_name"
            )
        ),
    }


# Parsing


def test_the_example_file_parses_without_warnings():
    config = parse_app_config(example_text())
    assert config.slug == "demo-shop"
    assert config.build_backend == "local"
    assert config.build_command == "sh build.sh"
    assert config.build_timeout_seconds == 1800
    assert config.build_hold_minutes == 10
    assert config.phase_timeout_seconds == 600
    assert config.soak_seconds == 60
    assert config.clusters["demo"].region == "us-east-1"
    assert [(s.name, s.process_type, s.phase) for s in config.services] == [
        ("worker", "worker", 1),
        ("poller", "poller", 2),
        ("static", "static", 3),
        ("web", "web", 3),
    ]
    worker = config.services[0]
    assert [
        (p.kind, p.cluster, p.ecs_service, p.container, p.legacy_job) for p in worker.placements
    ] == [
        ("ecs", "demo", "demo-shop-worker", "app", ""),
        ("legacy", "", "", "", "old-deploy-worker"),
    ]
    assert config.services[3].health_check_url == "https://demo-shop.example.com/healthz"
    assert config.warnings == []


def test_settings_left_out_are_none_and_service_fields_default():
    config = parse_app_config(changed(lambda d: (d.pop("build"), d.pop("rollout"))))
    assert config.build_command is None
    assert config.application_values() == {}
    assert config.services[0].health_check_url == ""


@pytest.mark.parametrize(
    ("text", "value"),
    [("90s", 90), ("10m", 600), ("1h", 3600), ("1h30m", 5400), (45, 45), ("0s", 0)],
)
def test_durations(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize(("seconds", "text"), [(90, "90s"), (600, "10m"), (7200, "2h"), (0, "0s")])
def test_durations_are_written_in_their_largest_whole_unit(seconds, text):
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def set_in(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def remove(path):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


def second_worker(placement):
    def change(data):
        data["services"].append(
            {"name": "worker", "process_type": "worker", "placements": [placement]}
        )

    return change


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (remove(["application"]), "application: required"),
        (remove(["services"]), "services: required"),
        (set_in(["application"], "demo shop"), "application: 'demo shop' is not a slug"),
        (set_in(["aplication"], "x"), "aplication: unknown key (did you mean 'application'?)"),
        (set_in(["build", "comand"], "x"), "build.comand: unknown key (did you mean 'command'?)"),
        (
            set_in(["services", 0, "phse"], 2),
            "services[0].phse: unknown key (did you mean 'phase'?)",
        ),
        (
            set_in(["services", 0, "placements", 0, "contaner"], "app"),
            "services[0].placements[0].contaner: unknown key (did you mean 'container'?)",
        ),
        (remove(["services", 1, "name"]), "services[1].name: required"),
        (remove(["services", 1, "process_type"]), "services[1].process_type: required"),
        (
            set_in(["services", 0, "process_type"], "wrker"),
            "services[0].process_type: 'wrker' is not one of web, static, worker, poller, "
            "other (did you mean 'worker'?)",
        ),
        (
            set_in(["services", 1, "phase"], 0),
            "services[1].phase: must be a positive whole number, not 0",
        ),
        (
            set_in(["services", 1, "phase"], "two"),
            "services[1].phase: must be a whole number, not str 'two'",
        ),
        (
            set_in(["services", 1, "phase"], True),
            "services[1].phase: must be a whole number, not the boolean true",
        ),
        (
            set_in(["build", "timeout"], "ten minutes"),
            "build.timeout: str 'ten minutes' is not a duration: write 90s, 10m, 1h, 1h30m or "
            "a whole number of seconds",
        ),
        (set_in(["build", "timeout"], "0s"), "build.timeout: must be longer than 0s"),
        (
            set_in(["build", "hold_window"], "90s"),
            "build.hold_window: must be whole minutes, not 90s",
        ),
        (
            set_in(["build", "auto_retries"], -1),
            "build.auto_retries: must be a whole number of at least 0, not -1",
        ),
        (
            set_in(["build", "backend"], "docker"),
            "build.backend: 'docker' is not one of local, jenkins",
        ),
        (
            set_in(["build", "command"], "sh 'build.sh"),
            "build.command: cannot be split like a shell would: No closing quotation",
        ),
        (
            set_in(["default_branch"], 2024),
            "default_branch: must be a string, not the number 2024",
        ),
        (
            set_in(["default_branch"], "a..b"),
            "default_branch: branch name may not contain '..'",
        ),
        (
            set_in(["git_remote"], "https://bob:hunter2@git.example.com/shop.git"),
            "git_remote: must not carry a password: git uses the worker's SSH keys",
        ),
        (
            set_in(["image_repository"], "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop:v1"),
            "image_repository: give the repository without a tag or digest: builds add the tag",
        ),
        (set_in(["rollout"], "10m"), "rollout: must be a mapping, not str '10m'"),
        (
            set_in(["rollout", "soak"], "1 minute"),
            "rollout.soak: str '1 minute' is not a duration: write 90s, 10m, 1h, 1h30m or a "
            "whole number of seconds",
        ),
        (
            set_in(["clusters", "demo", "region"], "Virginia"),
            "clusters.demo.region: 'Virginia' is not an AWS region",
        ),
        (
            set_in(["clusters", "demo", "arn"], "arn:aws:ecs:eu-west-1:123456789012:cluster/demo"),
            "clusters.demo.arn: is in region eu-west-1, but the cluster's region is us-east-1",
        ),
        (
            set_in(["services", 1, "health_check_url"], "not a url"),
            "services[1].health_check_url: 'not a url' is not an http(s) URL",
        ),
        (
            remove(["services", 1, "placements", 0, "cluster"]),
            "services[1].placements[0]: an ECS placement needs a cluster",
        ),
        (
            remove(["services", 1, "placements", 0, "ecs_service"]),
            "services[1].placements[0]: an ECS placement needs an ecs_service",
        ),
        (
            remove(["services", 1, "placements", 0, "container"]),
            "services[1].placements[0]: an ECS placement needs a container",
        ),
        (
            set_in(["services", 1, "placements", 0, "container"], ""),
            "services[1].placements[0].container: must not be empty",
        ),
        (
            set_in(["services", 1, "placements", 0], {}),
            "services[1].placements[0]: give cluster, ecs_service and container for an ECS "
            "placement, or legacy_job for a legacy one",
        ),
        (
            set_in(["services", 1, "placements", 0, "legacy_job"], "old-web"),
            "services[1].placements[0]: a legacy placement takes only legacy_job, not "
            "cluster, ecs_service, container",
        ),
        (
            set_in(["services", 1, "placements", 0, "cluster"], "deom"),
            "services[1].placements[0].cluster: no cluster 'deom' under clusters "
            "(did you mean 'demo'?)",
        ),
        (
            set_in(["services", 1, "placements"], {"cluster": "demo"}),
            "services[1].placements: must be a list, not a mapping (write [] for none)",
        ),
        (
            second_worker({"cluster": "demo", "ecs_service": "demo-shop-other", "container": "a"}),
            "services[2].name: 'worker' is already the name of services[0]",
        ),
        (
            set_in(["services", 1, "placements", 0, "ecs_service"], "demo-shop-worker"),
            "services[1].placements[0]: demo/demo-shop-worker is already placed by "
            "services[0].placements[0]",
        ),
        (
            set_in(["services", 0, "placements"], [{"legacy_job": "j"}, {"legacy_job": "j"}]),
            "services[0].placements[1].legacy_job: 'j' is already in services[0].placements[0]",
        ),
    ],
)
def test_each_bad_value_is_named_by_its_path(change, error):
    errors = errors_of(changed(change))
    assert any(e == error or e.startswith(error) for e in errors), errors


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the file is empty: it needs at least application and services"),
        ("- just\n- a list\n", "the file: must be a mapping, not a list"),
        ("application: [unclosed\n", "not valid YAML"),
        (
            "application: demo-shop\nservices: []\napplication: other\n",
            "line 3: key 'application' is given twice (first on line 1)",
        ),
    ],
)
def test_files_that_are_not_a_config(text, error):
    errors = errors_of(text)
    assert any(e.startswith(error) for e in errors), errors


def test_every_error_is_reported_not_just_the_first():
    def many(data):
        data["services"][0]["process_type"] = "wrker"
        data["services"][0]["placements"][0]["cluster"] = "prod"
        data["services"][1]["phase"] = 0
        del data["services"][1]["placements"][0]["cluster"]
        data["build"]["timeout"] = "soon"
        data["colour"] = "blue"

    errors = errors_of(changed(many))
    assert len(errors) == 6, errors
    assert [e.split(":")[0] for e in errors] == [
        "colour",
        "build.timeout",
        "services[0].process_type",
        "services[0].placements[0].cluster",
        "services[1].phase",
        "services[1].placements[0]",
    ]


def test_a_web_service_before_a_worker_is_a_warning_not_an_error():
    def web_first(data):
        data["services"][0]["phase"] = 2
        data["services"][1]["phase"] = 1

    config = parse_app_config(changed(web_first))
    assert config.warnings == [
        "services[1]: web service 'web' goes out in phase 1, before the workers and pollers "
        "it may depend on ('worker' in phase 2); web and static services belong in the last "
        "phase(s)"
    ]
    # In the same phase, or after, is fine.
    assert parse_app_config(changed(lambda d: None)).warnings == []


# Applying


@pytest.mark.django_db
def test_an_unknown_application_needs_create(application):
    text = example_text().replace("application: demo-shop", "application: new-shop")
    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(text))
    assert caught.value.errors == [
        "application: no application 'new-shop'; load with --create to create it"
    ]
    assert not Application.objects.filter(slug="new-shop").exists()
    assert not Cluster.objects.exists()

    without_remote = "\n".join(
        line for line in text.splitlines() if not line.startswith("git_remote:")
    )
    with pytest.raises(ConfigError, match="git_remote: required to create the application"):
        apply_app_config(parse_app_config(without_remote), create=True)
    assert not Application.objects.filter(slug="new-shop").exists()

    report = apply_app_config(parse_app_config(text), create=True)
    assert report.created[0] == "application new-shop"
    new = Application.objects.get(slug="new-shop")
    assert new.git_remote_url == "git@github.com:example/demo-shop.git"
    assert new.build_timeout_seconds == 1800
    assert list(new.services.values_list("name", flat=True)) == [
        "worker",
        "poller",
        "static",
        "web",
    ]


@pytest.mark.django_db
def test_apply_creates_everything_and_sets_the_application(application):
    report = apply_app_config(parse_app_config(example_text()))

    assert report.created == [
        "cluster demo (us-east-1)",
        "service worker (worker, phase 1)",
        "service poller (poller, phase 2)",
        "service static (static, phase 3)",
        "service web (web, phase 3)",
        "placement worker on demo/demo-shop-worker",
        "placement worker on legacy job old-deploy-worker",
        "placement poller on demo/demo-shop-poller",
        "placement static on demo/demo-shop-static",
        "placement web on demo/demo-shop-web",
    ]
    assert report.removed == []
    [updated] = report.updated
    assert updated.startswith("application demo-shop: git_remote ")
    assert "build.command \"sh -c 'for check in lint unit integration; do" in updated
    assert "build.timeout 1m -> 30m" in updated
    assert "build.jenkins_job '' -> 'demo-shop'" in updated

    application.refresh_from_db()
    assert application.git_remote_url == "git@github.com:example/demo-shop.git"
    assert application.build_command == "sh build.sh"
    assert application.build_timeout_seconds == 1800
    assert application.build_hold_minutes == 10
    assert application.image_repository.endswith(".amazonaws.com/demo-shop")
    assert application.phase_timeout_seconds == 600
    assert application.soak_seconds == 60
    demo = Cluster.objects.get(name="demo")
    assert (demo.region, demo.arn) == (
        "us-east-1",
        "arn:aws:ecs:us-east-1:123456789012:cluster/demo",
    )
    web = Service.objects.get(application=application, name="web")
    assert (web.process_type, web.phase) == ("web", 3)
    assert web.health_check_url == "https://demo-shop.example.com/healthz"
    assert sorted(
        Placement.objects.values_list(
            "service__name",
            "kind",
            "cluster__name",
            "ecs_service_name",
            "container_name",
            "legacy_job",
        )
    ) == [
        ("poller", "ecs", "demo", "demo-shop-poller", "app", ""),
        ("static", "ecs", "demo", "demo-shop-static", "nginx", ""),
        ("web", "ecs", "demo", "demo-shop-web", "app", ""),
        ("worker", "ecs", "demo", "demo-shop-worker", "app", ""),
        ("worker", "legacy", None, "", "", "old-deploy-worker"),
    ]


@pytest.mark.django_db
def test_applying_the_same_file_again_changes_nothing(application):
    apply_app_config(parse_app_config(example_text()))
    before = db_state(application)

    report = apply_app_config(parse_app_config(example_text()))

    assert not report.changed
    assert (report.created, report.updated, report.removed) == ([], [], [])
    assert str(report) == "demo-shop: unchanged"
    assert db_state(application) == before


@pytest.mark.django_db
def test_apply_after_an_edit_changes_exactly_that(application):
    apply_app_config(parse_app_config(example_text()))
    before = db_state(application)
    kept = dict(Placement.objects.values_list("ecs_service_name", "id"))

    def edit(data):
        data["services"][1]["phase"] = 1  # poller
        del data["services"][2]  # static
        data["services"][2]["placements"].append(
            {"cluster": "demo", "ecs_service": "demo-shop-web-canary", "container": "app"}
        )

    report = apply_app_config(parse_app_config(edited_example(edit)))

    assert report.updated == ["service poller: phase 2 -> 1"]
    assert report.created == ["placement web on demo/demo-shop-web-canary"]
    assert report.removed == ["placement static on demo/demo-shop-static", "service static"]
    assert str(report).startswith("demo-shop: 1 created, 1 updated, 2 removed\n")

    after = db_state(application)
    assert after["application"] == before["application"]
    assert after["clusters"] == before["clusters"]
    assert Service.objects.get(name="poller").phase == 1
    assert not Service.objects.filter(name="static").exists()
    assert not Placement.objects.filter(ecs_service_name="demo-shop-static").exists()
    # The placements that stayed are the same rows.
    for name in ("demo-shop-worker", "demo-shop-poller", "demo-shop-web"):
        assert Placement.objects.get(ecs_service_name=name).id == kept[name]
    assert Placement.objects.filter(ecs_service_name="demo-shop-web-canary").exists()


@pytest.mark.django_db
def test_settings_left_out_of_the_file_are_left_alone(application):
    application.image_repository = "registry.example.com/shop"
    application.save()
    text = "\n".join(
        line for line in example_text().splitlines() if not line.startswith("image_repository:")
    )
    apply_app_config(parse_app_config(text))
    application.refresh_from_db()
    assert application.image_repository == "registry.example.com/shop"
    assert application.build_command == "sh build.sh"


@pytest.mark.django_db
def test_a_placement_moved_to_another_service_keeps_its_row(application):
    apply_app_config(parse_app_config(example_text()))
    placement_id = Placement.objects.get(ecs_service_name="demo-shop-static").id

    def move(data):
        static = data["services"].pop(2)
        data["services"][2]["placements"] += static["placements"]  # onto web

    report = apply_app_config(parse_app_config(edited_example(move)))

    assert report.updated == ["placement web on demo/demo-shop-static: service static -> web"]
    assert report.removed == ["service static"]
    moved = Placement.objects.get(ecs_service_name="demo-shop-static")
    assert (moved.id, moved.service.name) == (placement_id, "web")


def make_rollout(user, application, placement):
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", requester=user, state="succeeded"
    )
    return ServiceRollout.objects.create(deploy=deploy, placement=placement, phase=1)


@pytest.mark.django_db
def test_a_placement_with_rollouts_is_not_removed_and_nothing_changes(application, user):
    apply_app_config(parse_app_config(example_text()))
    make_rollout(user, application, Placement.objects.get(ecs_service_name="demo-shop-static"))
    make_rollout(user, application, Placement.objects.get(legacy_job="old-deploy-worker"))
    before = db_state(application)

    def edit(data):
        data["name"] = "Renamed shop"
        data["services"][1]["phase"] = 1
        del data["services"][2]  # static, whose placement has a rollout
        data["services"][0]["placements"].pop()  # the legacy job, which has one too

    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(edited_example(edit)))

    assert caught.value.errors == [
        "placement worker on legacy job old-deploy-worker has 1 rollout(s) in its deploy "
        "history and cannot be removed: keep it in the file",
        "placement static on demo/demo-shop-static has 1 rollout(s) in its deploy history and "
        "cannot be removed (its service 'static' is not in the file): keep it in the file",
    ]
    assert db_state(application) == before
    assert application.name == "Demo shop"


@pytest.mark.django_db
def test_another_applications_ecs_service_is_refused(application):
    apply_app_config(parse_app_config(example_text()))
    other = example_text().replace("application: demo-shop", "application: other-shop")
    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(other), create=True)
    assert caught.value.errors[0] == (
        "services[0].placements[0]: demo/demo-shop-worker is already a placement of "
        "demo-shop's service 'worker'"
    )
    assert len(caught.value.errors) == 4  # every ECS placement, the legacy job is not one
    assert not Application.objects.filter(slug="other-shop").exists()


@pytest.mark.django_db
def test_dry_run_reports_the_changes_and_writes_nothing(application):
    before = db_state(application)
    report = apply_app_config(parse_app_config(example_text()), dry_run=True)
    assert len(report.created) == 10
    assert str(report).startswith("demo-shop: 10 created, 1 updated, 0 removed (dry run")
    assert db_state(application) == before
    assert not Cluster.objects.exists()


# The command


@pytest.mark.django_db
def test_the_command_with_dry_run_changes_nothing(application, capsys):
    before = db_state(application)
    call_command("load_app_config", str(EXAMPLE), "--dry-run")
    out = capsys.readouterr().out
    assert "(dry run: nothing was written)" in out
    assert "  created service web (web, phase 3)" in out
    assert db_state(application) == before
    assert not Service.objects.exists()


@pytest.mark.django_db
def test_the_command_loads_the_file_and_prints_warnings(application, tmp_path, capsys):
    call_command("load_app_config", str(EXAMPLE))
    assert "demo-shop: 10 created, 1 updated, 0 removed" in capsys.readouterr().out
    assert Service.objects.filter(application=application).count() == 4

    path = tmp_path / "web-first.yml"
    path.write_text(edited_example(lambda d: d["services"][3].update(phase=1)))
    call_command("load_app_config", str(path))
    captured = capsys.readouterr()
    assert "  updated service web: phase 3 -> 1" in captured.out
    assert "warning: services[3]: web service 'web' goes out in phase 1" in captured.err


@pytest.mark.django_db
def test_the_command_with_a_bad_file_raises_every_error(application, tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        edited_example(
            lambda d: (d["services"][0].update(phase=0), d["build"].update(timeout="soon"))
        )
    )
    before = db_state(application)
    with pytest.raises(CommandError) as caught:
        call_command("load_app_config", str(path))
    message = str(caught.value)
    assert f"{path}: 2 errors, nothing was changed:" in message
    assert "  build.timeout: str 'soon' is not a duration" in message
    assert "  services[0].phase: must be a positive whole number, not 0" in message
    assert db_state(application) == before

    with pytest.raises(CommandError, match="load with --create"):
        call_command(
            "load_app_config",
            str(
                _write(tmp_path, example_text().replace("application: demo-shop", "application: x"))
            ),
        )
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_app_config", str(tmp_path / "missing.yml"))


def _write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_the_command_exits_non_zero_with_the_errors(tmp_path):
    path = _write(tmp_path, changed(set_in(["services", 0, "process_type"], "wrker")))
    result = subprocess.run(
        [sys.executable, "manage.py", "load_app_config", str(path)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "services[0].process_type: 'wrker' is not one of" in result.stderr


# Export


@pytest.mark.django_db
def test_export_round_trips_the_example(application):
    apply_app_config(parse_app_config(example_text()))
    application.refresh_from_db()
    exported = export_app_config(application)
    assert exported.startswith("# demo-shop: Fat Controller application configuration")
    config = parse_app_config(exported)
    assert config == parse_app_config(example_text())
    assert config.warnings == []
    assert not apply_app_config(config).changed


@pytest.mark.django_db
def test_export_says_what_is_in_the_database(application):
    cluster = Cluster.objects.create(name="prod", region="eu-west-1")
    web = Service.objects.create(application=application, name="web", process_type="web", phase=2)
    jobs = Service.objects.create(
        application=application,
        name="jobs",
        process_type="other",
        phase=1,
        health_check_url="http://jobs.internal/ping",
    )
    Placement.objects.create(
        service=web, cluster=cluster, ecs_service_name="shop-web", container_name="app"
    )
    Placement.objects.create(service=jobs, kind="legacy", legacy_job="run-jobs")
    application.build_hold_minutes = 90
    application.soak_seconds = 45
    application.save()

    config = parse_app_config(export_app_config(application))

    application.refresh_from_db()
    for name, value in config.application_values().items():
        assert getattr(application, name) == value, name
    assert config.build_hold_minutes == 90
    assert config.soak_seconds == 45
    assert config.git_remote_url == application.git_remote_url
    assert list(config.clusters) == ["prod"]
    assert (config.clusters["prod"].region, config.clusters["prod"].arn) == ("eu-west-1", "")
    assert [(s.name, s.process_type, s.phase, s.health_check_url) for s in config.services] == [
        ("jobs", "other", 1, "http://jobs.internal/ping"),
        ("web", "web", 2, ""),
    ]
    assert [p.describe() for s in config.services for p in s.placements] == [
        "legacy job run-jobs",
        "prod/shop-web",
    ]
    assert not apply_app_config(config).changed


# The API


@pytest.mark.django_db
def test_the_api_gives_the_config(application, user):
    apply_app_config(parse_app_config(example_text()))
    client = APIClient()
    client.force_authenticate(user)

    response = client.get("/api/applications/demo-shop/config/")

    assert response.status_code == 200
    body = response.json()
    application.refresh_from_db()
    assert body == export_app_config_data(application)
    assert body["application"] == "demo-shop"
    assert body["build"]["timeout"] == "30m"
    assert body["rollout"] == {"phase_timeout": "10m", "soak": "1m"}
    assert body["clusters"]["demo"]["region"] == "us-east-1"
    assert [s["name"] for s in body["services"]] == ["worker", "poller", "static", "web"]
    assert body["services"][0]["placements"] == [
        {"cluster": "demo", "ecs_service": "demo-shop-worker", "container": "app"},
        {"legacy_job": "old-deploy-worker"},
    ]
    # The same structure as the file: it parses as one.
    assert parse_app_config(yaml.safe_dump(body)) == parse_app_config(example_text())


@pytest.mark.django_db
def test_the_api_needs_a_login(application):
    response = APIClient().get("/api/applications/demo-shop/config/")
    assert response.status_code in (401, 403)
    assert "services" not in response.json()


@pytest.mark.django_db
def test_the_api_answers_404_for_an_unknown_application(user):
    client = APIClient()
    client.force_authenticate(user)
    response = client.get("/api/applications/no-such-app/config/")
    assert response.status_code == 404
    assert "errors" in response.json()


def test_the_documented_example_is_the_example_file():
    docs = (ROOT / "docs" / "app-config.md").read_text()
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert parse_app_config(block) == parse_app_config(example_text())
