import pytest

from appconfig.parse import parse_app_config
from appconfig.schema import format_duration, parse_duration
from tests.appconfig.files import ROOT, changed, errors_of, example_text, set_in


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
            set_in(["image_repository"], "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop:v1"),
            "image_repository: give the repository without a tag or digest: builds add the tag",
        ),
        (set_in(["rollout"], "10m"), "rollout: must be a mapping, not str '10m'"),
        (
            set_in(["clusters", "demo", "drain_disconnected"], "yes"),
            "clusters.demo.drain_disconnected: must be true or false, not str 'yes'",
        ),
        (
            set_in(["clusters", "demo", "reserved_memory_minimum"], -1),
            "clusters.demo.reserved_memory_minimum: must be a whole number of at least 0, not -1",
        ),
        (
            set_in(["clusters", "demo", "reserved_memory_minimum"], "256m"),
            "clusters.demo.reserved_memory_minimum: must be a whole number, not str '256m'",
        ),
        (
            set_in(["rollout", "memory_guard"], "off"),
            "rollout.memory_guard: 'off' is not one of refuse, warn",
        ),
        (
            set_in(["rollout", "crash_loop"], "kill"),
            "rollout.crash_loop: 'kill' is not one of restore, scale_to_zero, report",
        ),
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
            "services[1].placements[0]: a legacy placement takes only legacy_job and "
            "legacy_version, not cluster, ecs_service, container",
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


CREDENTIALS = "must not carry credentials (a user, token or password before the host)"
GIT_REMOTE = (["git_remote"], f"git_remote: {CREDENTIALS}: git uses the worker's SSH keys")
HEALTH_CHECK = (
    ["services", 1, "health_check_url"],
    f"services[1].health_check_url: {CREDENTIALS}: the file is no place for a secret",
)


@pytest.mark.parametrize(
    ("where", "url"),
    [
        (GIT_REMOTE, "https://TOKEN@git.example.com/shop.git"),
        (GIT_REMOTE, "https://bob:TOKEN@git.example.com/shop.git"),
        (GIT_REMOTE, "ssh://git:TOKEN@git.example.com/shop.git"),
        (HEALTH_CHECK, "https://TOKEN@shop.example.com/healthz"),
        (HEALTH_CHECK, "https://probe:TOKEN@shop.example.com/healthz"),
    ],
)
def test_a_url_with_credentials_is_refused_without_repeating_them(where, url):
    path, error = where
    errors = errors_of(changed(set_in(path, url)))
    assert errors == [error]
    assert "TOKEN" not in "\n".join(errors)


@pytest.mark.parametrize(
    "remote",
    ["git@github.com:example/shop.git", "ssh://git@github.com/example/shop.git", "/srv/shop.git"],
)
def test_a_git_remote_with_only_a_login_name_is_fine(remote):
    assert parse_app_config(changed(set_in(["git_remote"], remote))).git_remote_url == remote


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


def test_the_documented_example_is_the_example_file():
    docs = (ROOT / "docs" / "app-config.md").read_text()
    block = docs.split("```yaml\n", 1)[1].split("```", 1)[0]
    assert parse_app_config(block) == parse_app_config(example_text())
