"""Docker hosts and Docker placements in the config file: parsed into Placement.docker_config
(durations in seconds, defaults filled in), refused with the path of each problem, applied,
and exported so that loading the export changes nothing."""

import textwrap

import pytest
import yaml

from appconfig.apply import apply_app_config
from appconfig.errors import ConfigError
from appconfig.export import export_app_config
from appconfig.parse import parse_app_config
from clusters.models import Cluster, ClusterKind, Placement, PlacementKind, Service
from deploys.models import Application
from tests.appconfig.files import ROOT, changed, errors_of

WEB_ON_BOX = {
    "docker": "box-1",
    "replicas": 2,
    "memory": "64m",
    "command": ["httpd", "-f", "-p", "8080"],
    "env": {"GREETING": "hello", "WORKERS": 4},
    "ports": ["8080", 9090],
    "health_check": {
        "test": ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
        "interval": "2s",
        "timeout": "1s",
        "retries": 3,
        "start_period": "5s",
    },
    "stop_timeout": "10s",
    "max_surge": 50,
    "min_healthy": 100,
    "grace": "5s",
}


def with_docker(placement=None, **cluster):
    def change(data):
        data["clusters"]["box-1"] = cluster or {"docker_host": "unix:///var/run/docker.sock"}
        data["services"][1]["placements"] = [dict(WEB_ON_BOX if placement is None else placement)]

    return changed(change)


def docker_placement(**changes):
    placement = dict(WEB_ON_BOX)
    for key, value in changes.items():
        if value is None:
            placement.pop(key)
        else:
            placement[key] = value
    return with_docker(placement)


def test_a_docker_placement_parses_into_its_stored_config():
    config = parse_app_config(with_docker())
    assert config.clusters["box-1"].kind == ClusterKind.DOCKER
    assert config.clusters["box-1"].docker_host == "unix:///var/run/docker.sock"
    [placement] = config.services[1].placements
    assert placement.kind == PlacementKind.DOCKER
    assert placement.describe() == "docker host box-1"
    assert placement.docker_config == {
        "replicas": 2,
        "memory": "64m",
        "command": ["httpd", "-f", "-p", "8080"],
        "env": {"GREETING": "hello", "WORKERS": "4"},
        # Stored in the target's words (appconfig/docker_shape.py): ports as the engine
        # publishes them, healthcheck, and max_surge as ECS's maximumPercent (100 + 50).
        "ports": {"8080/tcp": 8080, "9090/tcp": 9090},
        "network": "bridge",
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"],
            "interval": 2,
            "timeout": 1,
            "retries": 3,
            "start_period": 5,
        },
        "stop_timeout": 10,
        "max_surge": 150,
        "min_healthy": 100,
        "grace": 5,
    }


def test_what_a_docker_placement_leaves_out_is_its_default():
    config = parse_app_config(with_docker({"docker": "box-1", "memory": "128M"}))
    assert config.services[1].placements[0].docker_config == {
        "replicas": 1,
        "memory": "128m",
        "command": None,
        "env": {},
        "ports": {},
        "network": "bridge",
        "healthcheck": None,
        "stop_timeout": 10,
        "max_surge": 200,
        "min_healthy": 100,
        "grace": 10,
    }


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            docker_placement(memory=None),
            "services[1].placements[0].memory: a Docker placement needs a hard memory limit "
            "(like 64m): without one a single container can take the host down",
        ),
        (
            docker_placement(memory="lots"),
            "services[1].placements[0].memory: str 'lots' is not a memory size",
        ),
        (docker_placement(memory="1m"), "services[1].placements[0].memory: must be at least 6m"),
        (
            docker_placement(replicas=0),
            "services[1].placements[0].replicas: must be a positive whole number, not 0",
        ),
        (
            docker_placement(replicas="2"),
            "services[1].placements[0].replicas: must be a whole number",
        ),
        (
            docker_placement(replics=2),
            "services[1].placements[0].replics: unknown key (did you mean 'replicas'?)",
        ),
        (
            docker_placement(command="httpd -f"),
            "services[1].placements[0].command: must be the command to run",
        ),
        (
            docker_placement(env={"GREETING": ["a"]}),
            "services[1].placements[0].env.GREETING: must be a string or a whole number",
        ),
        (
            docker_placement(env={"1BAD": "x"}),
            "services[1].placements[0].env.1BAD: is not an environment variable's name",
        ),
        (
            docker_placement(ports=["80000"]),
            "services[1].placements[0].ports[0]: str '80000' is not a port",
        ),
        (
            docker_placement(health_check={"interval": "2s"}),
            "services[1].placements[0].health_check.test: required",
        ),
        (
            docker_placement(health_check={"test": ["wget", "x"]}),
            "services[1].placements[0].health_check.test: starts with CMD, CMD-SHELL, NONE",
        ),
        (
            docker_placement(health_check={"test": ["CMD", "true"], "every": "2s"}),
            "services[1].placements[0].health_check.every: unknown key",
        ),
        (
            docker_placement(health_check={"test": ["CMD", "true"], "interval": "0s"}),
            "services[1].placements[0].health_check.interval: must be longer than 0s",
        ),
        (
            docker_placement(stop_timeout="soon"),
            "services[1].placements[0].stop_timeout: str 'soon' is not a duration",
        ),
        (
            docker_placement(max_surge=150),
            "services[1].placements[0].max_surge: is a percent of replicas, from 0 to 100",
        ),
        (
            docker_placement(max_surge=0, min_healthy=100),
            "services[1].placements[0]: max_surge 0 and min_healthy 100 leave a rollout no room",
        ),
        (
            docker_placement(ecs_service="web"),
            "services[1].placements[0]: a Docker placement takes docker and its containers' "
            "settings, not ecs_service",
        ),
        (
            docker_placement(docker="box-2"),
            "services[1].placements[0].docker: no Docker host 'box-2' under clusters "
            "(did you mean 'box-1'?)",
        ),
        (
            docker_placement(docker="demo"),
            "services[1].placements[0].docker: 'demo' is an ECS cluster",
        ),
        (
            with_docker({"cluster": "box-1", "ecs_service": "web", "container": "app"}),
            "services[1].placements[0].cluster: 'box-1' is a Docker host",
        ),
        (
            with_docker({"cluster": "demo", "ecs_service": "web", "container": "app", "memory": 1}),
            "services[1].placements[0].memory: is for a Docker placement: give it beside docker",
        ),
        (
            with_docker(docker_host="unix:///x.sock", region="us-east-1"),
            "clusters.box-1: a Docker host takes only docker_host and reserved_memory_minimum, not "
            "region",
        ),
        (
            with_docker(docker_host="box:2376"),
            "clusters.box-1.docker_host: 'box:2376' is not a Docker engine's address",
        ),
    ],
)
def test_each_bad_docker_value_is_named_by_its_path(text, error):
    errors = errors_of(text)
    assert any(e.startswith(error) for e in errors), errors


def test_a_docker_host_with_credentials_is_refused_without_repeating_them():
    [error] = errors_of(with_docker(docker_host="tcp://admin:hunter2@box:2376"))
    assert error.startswith("clusters.box-1.docker_host: must not carry credentials")
    assert "hunter2" not in error


def test_a_host_placed_twice_in_one_service_is_an_error():
    def twice(data):
        data["clusters"]["box-1"] = {"docker_host": "tcp://box:2376"}
        data["services"][1]["placements"] = [
            {"docker": "box-1", "memory": "64m"},
            {"docker": "box-1", "memory": "32m"},
        ]

    errors = errors_of(changed(twice))
    assert any(e.startswith("services[1].placements[1].docker: 'box-1' is already") for e in errors)


@pytest.mark.django_db
def test_apply_creates_the_host_and_the_placement_and_export_round_trips(application):
    report = apply_app_config(parse_app_config(with_docker()))
    assert "cluster box-1 (docker host unix:///var/run/docker.sock)" in report.created
    cluster = Cluster.objects.get(name="box-1")
    assert (cluster.kind, cluster.docker_host) == ("docker", "unix:///var/run/docker.sock")
    placement = Placement.objects.get(kind=PlacementKind.DOCKER)
    assert placement.service.name == "web"
    assert placement.cluster == cluster
    assert placement.docker_config["healthcheck"]["start_period"] == 5
    assert placement.docker_config["env"] == {"GREETING": "hello", "WORKERS": "4"}

    application.refresh_from_db()
    exported = export_app_config(application)
    assert "docker_host: unix:///var/run/docker.sock" in exported
    again = parse_app_config(exported)
    assert again.services[1].placements[0].docker_config == placement.docker_config
    assert not apply_app_config(again).changed


@pytest.mark.django_db
def test_export_of_a_placement_with_defaults_writes_only_what_differs(application):
    apply_app_config(parse_app_config(with_docker({"docker": "box-1", "memory": "64m"})))
    application.refresh_from_db()
    exported = export_app_config(application)
    assert "- docker: box-1\n        memory: 64m\n" in exported
    assert "replicas" not in exported
    assert not apply_app_config(parse_app_config(exported)).changed


@pytest.mark.django_db
def test_a_changed_docker_config_is_updated_in_place_saying_what_changed(application):
    apply_app_config(parse_app_config(with_docker()))
    placement = Placement.objects.get(kind=PlacementKind.DOCKER)

    report = apply_app_config(parse_app_config(docker_placement(memory="128m", grace="1m")))

    assert report.updated == [
        "placement web on docker host box-1: grace 5s -> 1m; memory '64m' -> '128m'"
    ]
    placement.refresh_from_db()
    assert placement.pk == Placement.objects.get(kind=PlacementKind.DOCKER).pk
    assert (placement.docker_config["memory"], placement.docker_config["grace"]) == ("128m", 60)


@pytest.mark.django_db
def test_a_cluster_another_application_uses_keeps_its_kind(application):
    other_application = Application.objects.create(
        slug="other-app", name="Other", git_remote_url=application.git_remote_url
    )
    cluster = Cluster.objects.create(name="box-1", region="us-east-1")
    service = Service.objects.create(application=other_application, name="w", process_type="web")
    Placement.objects.create(service=service, cluster=cluster, ecs_service_name="w")

    with pytest.raises(ConfigError) as caught:
        apply_app_config(parse_app_config(with_docker()))

    assert caught.value.errors[0].startswith(
        "clusters.box-1: is an ECS cluster that other-app also place services on, so it "
        "cannot become a Docker host"
    )
    cluster.refresh_from_db()
    assert (cluster.kind, cluster.docker_host) == ("ecs", "")


@pytest.mark.django_db
def test_an_unused_ecs_cluster_can_become_a_docker_host(application):
    Cluster.objects.create(name="box-1", region="eu-west-1")
    report = apply_app_config(parse_app_config(with_docker(docker_host="tcp://box:2376")))
    assert "cluster box-1: kind ecs -> docker; docker_host '' -> 'tcp://box:2376'" in report.updated
    cluster = Cluster.objects.get(name="box-1")
    assert (cluster.kind, cluster.docker_host) == ("docker", "tcp://box:2376")


def test_the_documented_docker_placement_parses():
    docs = (ROOT / "docs" / "app-config.md").read_text()
    section = docs.split("#### Docker placements", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    placements = yaml.safe_load(textwrap.dedent(block))["placements"]

    def change(data):
        data["clusters"]["box-1"] = {"docker_host": "unix:///var/run/docker.sock"}
        data["services"][1]["placements"] = placements

    [placement] = parse_app_config(changed(change)).services[1].placements
    assert placement.docker_config["replicas"] == 2
    assert placement.docker_config["healthcheck"]["start_period"] == 5


def test_what_the_file_stores_is_what_the_docker_target_runs():
    from clusters.targets.docker_config import normalize

    [placement] = parse_app_config(with_docker()).services[1].placements
    assert normalize(placement.docker_config, container="web") == {
        **placement.docker_config,
        "memory": normalize(placement.docker_config, container="web")["memory"],
    }


def test_a_config_the_docker_target_could_not_run_is_refused_at_its_path():
    # Ports are published on Docker's bridge only: on the host's network they mean nothing.
    errors = errors_of(docker_placement(network="host"))
    assert any(
        e.startswith("services[1].placements[0]: ") and "bridge network only" in e for e in errors
    ), errors
    assert errors_of(docker_placement(network="space"))[0].startswith(
        "services[1].placements[0].network: str 'space' is not a network"
    )


def test_a_docker_host_takes_a_reserved_memory_minimum():
    config = parse_app_config(
        with_docker(docker_host="unix:///var/run/docker.sock", reserved_memory_minimum=512)
    )
    assert config.clusters["box-1"].reserved_memory_minimum == 512
    assert config.clusters["box-1"].kind == ClusterKind.DOCKER
