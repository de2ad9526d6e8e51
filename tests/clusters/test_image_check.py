"""The image check before a rollout: ECR through boto3 (moto), other registries by their API."""

import http.server
import threading

import boto3
import pytest
from moto import mock_aws

from clusters.targets.base import TargetRefused, TargetUnavailable
from clusters.targets.ecs import image_exists

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


@pytest.fixture
def ecr(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-for-tests")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("ecr", region_name="eu-west-1")
        client.create_repository(repositoryName="team/shop")
        client.put_image(
            repositoryName="team/shop",
            imageManifest='{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json", "layers": []}',  # noqa: E501
            imageTag="abc123",
        )
        yield client


def test_an_ecr_image_is_found_by_its_tag(ecr):
    assert image_exists(f"{ECR}/team/shop:abc123")
    assert not image_exists(f"{ECR}/team/shop:nope")
    assert not image_exists(f"{ECR}/team/missing-repository:abc123")


def test_an_image_without_a_tag_is_refused(ecr):
    with pytest.raises(TargetRefused, match="has no tag"):
        image_exists(f"{ECR}/team/shop")


class Registry(http.server.BaseHTTPRequestHandler):
    """A registry's HTTP API v2, as far as HEAD /v2/<name>/manifests/<tag> goes."""

    answers = {"/v2/team/shop/manifests/abc123": 200, "/v2/private/app/manifests/v1": 401}

    def do_HEAD(self):
        self.send_response(self.answers.get(self.path, 404))
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def registry():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_another_registry_is_asked_through_its_api(registry):
    assert image_exists(f"{registry}/team/shop:abc123")
    assert not image_exists(f"{registry}/team/shop:other")
    with pytest.raises(TargetRefused, match="wants credentials"):
        image_exists(f"{registry}/private/app:v1")


def test_a_registry_that_does_not_answer_is_passing_trouble():
    with pytest.raises(TargetUnavailable, match="did not answer"):
        image_exists("127.0.0.1:9/team/shop:abc123")
