"""A Docker placement's config is checked before anything changes, and an engine that does not
answer (or would be reached without TLS) says so in plain words."""

import pytest

from clusters.targets.base import TargetRefused, TargetUnavailable
from clusters.targets.docker import DockerTarget, forget_clients
from clusters.targets.docker_config import ConfigError, normalize, revision_of

GOOD = {"replicas": 2, "memory": "64m", "command": ["httpd", "-f"]}


def test_a_good_config_is_completed_and_the_same_config_is_the_same_revision():
    config = normalize(GOOD, container="shop/web")
    assert config["memory"] == 64 * 1024 * 1024
    assert (config["max_surge"], config["min_healthy"], config["stop_timeout"]) == (200, 100, 10)
    same = normalize(dict(reversed(list(GOOD.items()))), container="shop/web")
    assert revision_of("shop:1", config) == revision_of("shop:1", same)
    assert len(revision_of("shop:1", config)) == 12
    assert revision_of("shop:1", config) != revision_of("shop:2", config)
    assert revision_of("shop:1", config) != revision_of(
        "shop:1", normalize({**GOOD, "env": {"A": "1"}}, container="shop/web")
    )


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"memory": None}, "shop/web has no hard memory limit"),
        ({"memory": "lots"}, "memory must be like 64m"),
        ({"memory": "1m"}, "at least 6m"),
        ({"replicas": 0}, "replicas must be 1 or more"),
        ({"max_surge": 300}, "max_surge must be 100 to 200"),
        ({"min_healthy": -1}, "min_healthy must be 0 to 100"),
        ({"max_surge": 100, "min_healthy": 100}, "leaves no room"),
        ({"memroy": "64m"}, "unknown keys: memroy"),
        ({"healthcheck": {"test": ["curl"]}}, "must be a list starting with CMD"),
        ({"healthcheck": {"test": ["CMD", "true"], "interval": 0}}, "interval must be at least"),
        ({"network": "none", "ports": {"80": 8080}}, "bridge network only"),
    ],
)
def test_a_config_that_cannot_run_is_refused_naming_the_container(change, said):
    with pytest.raises(ConfigError, match=said):
        normalize({**GOOD, **change}, container="shop/web")


def test_an_engine_that_does_not_answer_is_unavailable():
    target = DockerTarget("unix:///tmp/fc-no-engine-here.sock")
    try:
        with pytest.raises(TargetUnavailable, match="fc-no-engine-here"):
            target.image_exists("shop:1")
    finally:
        forget_clients()


def test_a_tcp_engine_off_the_loopback_needs_tls_settings(settings):
    settings.FC_DOCKER_TLS_CA = settings.FC_DOCKER_TLS_CERT = settings.FC_DOCKER_TLS_KEY = ""
    with pytest.raises(TargetRefused, match="FC_DOCKER_TLS_CA"):
        DockerTarget("tcp://docker-host-1.internal:2376").image_exists("shop:1")
