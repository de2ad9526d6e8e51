"""The image check for registries other than ECR, against a stand-in registry with its token
service (tests/registry_standin.py): anonymous tokens, credentials from the environment,
Basic challenges, every manifest kind, and the errors that say whether to try again."""

import socket

import pytest

from clusters.targets.base import TargetRefused, TargetUnavailable
from clusters.targets.registry import (
    MANIFEST_TYPES,
    Reference,
    credential_variables,
    image_in_registry,
    parse_reference,
)
from tests.registry_standin import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryStandin,
)

SECRET = "hunter2-never-say-this"


@pytest.fixture
def registry():
    with RegistryStandin(users={"robot": SECRET, "intern": "other-secret"}) as standin:
        standin.push("team/shop", "abc123")
        standin.push("team/private", "v1", private=True, readers={"robot"})
        yield standin


@pytest.fixture
def basic_registry():
    with RegistryStandin(auth="basic", users={"robot": SECRET}) as standin:
        standin.push("team/shop", "abc123")
        yield standin


def log_in(monkeypatch, registry, user="robot", password=SECRET):
    user_var, password_var = credential_variables(registry.host)
    monkeypatch.setenv(user_var, user)
    monkeypatch.setenv(password_var, password)


def token_requests(registry):
    return [seen for seen in registry.requests if seen.path.startswith("/token")]


def test_a_public_image_is_found_with_an_anonymous_token(registry):
    assert image_in_registry(f"{registry.host}/team/shop:abc123")
    (asked,) = token_requests(registry)
    assert "scope=repository%3Ateam%2Fshop%3Apull" in asked.path
    assert "service=registry.standin" in asked.path
    assert "Authorization" not in asked.headers
    assert registry.requests[-1].headers["Authorization"].startswith("Bearer ")


def test_every_head_lists_the_docker_and_oci_manifest_types(registry):
    image_in_registry(f"{registry.host}/team/shop:abc123")
    heads = [seen for seen in registry.requests if seen.method == "HEAD"]
    assert len(heads) == 2
    for head in heads:
        assert set(head.headers["Accept"].split(", ")) == set(MANIFEST_TYPES)


def test_a_tag_the_registry_does_not_have_is_not_there(registry):
    assert image_in_registry(f"{registry.host}/team/shop:nope") is False


@pytest.mark.parametrize(
    "media_type", [DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX]
)
def test_every_kind_of_manifest_is_found(registry, media_type):
    registry.push("team/multi", "v2", media_type=media_type)
    assert image_in_registry(f"{registry.host}/team/multi:v2")


def test_an_image_is_found_by_its_digest(registry):
    digest = registry.push("team/shop", "def456", media_type=OCI_INDEX)
    assert image_in_registry(f"{registry.host}/team/shop@{digest}")
    assert image_in_registry(f"{registry.host}/team/shop:ignored@{digest}")
    assert not image_in_registry(f"{registry.host}/team/shop@sha256:{'0' * 64}")


def test_an_image_without_a_tag_is_refused(registry):
    with pytest.raises(TargetRefused, match="has no tag"):
        image_in_registry(f"{registry.host}/team/shop")
    assert registry.requests == []


def test_a_private_repository_without_credentials_is_refused_naming_the_variables(registry):
    user_var, password_var = credential_variables(registry.host)
    with pytest.raises(TargetRefused, match="wants credentials") as refused:
        image_in_registry(f"{registry.host}/team/private:v1")
    assert user_var in str(refused.value) and password_var in str(refused.value)
    assert user_var == f"FC_REGISTRY_USER_127_0_0_1_{registry.host.rpartition(':')[2]}"


def test_a_repository_that_does_not_exist_is_refused_like_a_private_one(registry):
    # Docker Hub and GHCR do not say which repositories exist to those who may not see them.
    with pytest.raises(TargetRefused, match="or has no such repository"):
        image_in_registry(f"{registry.host}/team/never-pushed:v1")


def test_a_private_repository_is_found_with_credentials_from_the_environment(registry, monkeypatch):
    log_in(monkeypatch, registry)
    assert image_in_registry(f"{registry.host}/team/private:v1")
    assert not image_in_registry(f"{registry.host}/team/private:v2")
    assert all(
        seen.headers["Authorization"].startswith("Basic ") for seen in token_requests(registry)
    )


def test_wrong_credentials_are_refused_naming_the_variables(registry, monkeypatch):
    log_in(monkeypatch, registry, password="not-it")
    with pytest.raises(TargetRefused, match="refused the credentials in FC_REGISTRY_USER_"):
        image_in_registry(f"{registry.host}/team/shop:abc123")


def test_credentials_without_pull_access_are_refused(registry, monkeypatch):
    log_in(monkeypatch, registry, user="intern", password="other-secret")
    with pytest.raises(TargetRefused, match="refused the credentials"):
        image_in_registry(f"{registry.host}/team/private:v1")


def test_a_user_without_a_password_is_refused_before_asking(registry, monkeypatch):
    user_var, password_var = credential_variables(registry.host)
    monkeypatch.setenv(user_var, "robot")
    with pytest.raises(TargetRefused, match=f"{user_var} is set but {password_var} is not"):
        image_in_registry(f"{registry.host}/team/shop:abc123")
    assert registry.requests == []


def test_a_token_service_that_answers_access_token_only_is_understood():
    with RegistryStandin(token_field="access_token") as standin:
        standin.push("team/shop", "abc123")
        assert image_in_registry(f"{standin.host}/team/shop:abc123")


def test_without_a_scope_in_the_challenge_pull_on_the_repository_is_asked_for():
    with RegistryStandin(scope_in_challenge=False) as standin:
        standin.push("team/shop", "abc123")
        assert image_in_registry(f"{standin.host}/team/shop:abc123")
        (asked,) = token_requests(standin)
        assert "scope=repository%3Ateam%2Fshop%3Apull" in asked.path


def test_a_basic_challenge_is_answered_with_the_credentials(basic_registry, monkeypatch):
    with pytest.raises(TargetRefused, match="wants credentials"):
        image_in_registry(f"{basic_registry.host}/team/shop:abc123")
    log_in(monkeypatch, basic_registry)
    assert image_in_registry(f"{basic_registry.host}/team/shop:abc123")
    assert not image_in_registry(f"{basic_registry.host}/team/shop:nope")
    log_in(monkeypatch, basic_registry, password="not-it")
    with pytest.raises(TargetRefused, match="refused the credentials"):
        image_in_registry(f"{basic_registry.host}/team/shop:abc123")


def test_a_failing_registry_is_passing_trouble(registry):
    registry.outage = 503
    with pytest.raises(TargetUnavailable, match="answered 503"):
        image_in_registry(f"{registry.host}/team/shop:abc123")


def test_a_rate_limited_registry_is_passing_trouble(registry):
    registry.outage = 429
    with pytest.raises(TargetUnavailable, match="answered 429"):
        image_in_registry(f"{registry.host}/team/shop:abc123")


def test_a_failing_token_service_is_passing_trouble(registry):
    registry.token_outage = 502
    with pytest.raises(TargetUnavailable, match="token service .* answered 502"):
        image_in_registry(f"{registry.host}/team/shop:abc123")


def test_a_registry_that_is_down_is_passing_trouble():
    standin = RegistryStandin().start()
    host = standin.host
    standin.stop()
    with pytest.raises(TargetUnavailable, match="did not answer"):
        image_in_registry(f"{host}/team/shop:abc123")


def test_a_registry_that_does_not_answer_in_time_is_passing_trouble(settings):
    settings.FC_AWS_TIMEOUT = 0.2
    # Listening but never answering: the connection is made, the answer never comes.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(TargetUnavailable, match="did not answer"):
            image_in_registry(f"{host}/team/shop:abc123")


def every_message(exc):
    while exc is not None:
        yield str(exc)
        yield repr(exc)
        exc = exc.__cause__ or exc.__context__


def test_the_secret_never_appears_in_an_error(registry, basic_registry, monkeypatch):
    def failures():
        log_in(monkeypatch, registry, password=SECRET + "-wrong")
        yield f"{registry.host}/team/shop:abc123"  # the token service says 401
        log_in(monkeypatch, registry, user="intern", password=SECRET)
        yield f"{registry.host}/team/private:v1"  # a token without the grant, then 401
        log_in(monkeypatch, registry)
        registry.token_outage = 503
        yield f"{registry.host}/team/private:v1"
        registry.token_outage = None
        registry.outage = 500
        yield f"{registry.host}/team/private:v1"
        log_in(monkeypatch, basic_registry, password=SECRET + "-wrong")
        yield f"{basic_registry.host}/team/shop:abc123"

    seen = 0
    for image in failures():
        with pytest.raises((TargetRefused, TargetUnavailable)) as failed:
            image_in_registry(image)
        for message in every_message(failed.value):
            assert SECRET not in message
            assert not any(token in message for token in registry.tokens)
        seen += 1
    assert seen == 5


def test_credentials_are_not_sent_in_clear_to_another_machine(monkeypatch):
    # A registry here whose challenge names a token service elsewhere over plain HTTP.
    with RegistryStandin(realm="http://auth.example.com/token") as standin:
        standin.push("team/shop", "abc123")
        log_in(monkeypatch, standin)
        with pytest.raises(TargetRefused, match="over plain HTTP"):
            image_in_registry(f"{standin.host}/team/shop:abc123")
        assert token_requests(standin) == []


@pytest.mark.parametrize(
    ("image", "host", "name", "reference"),
    [
        ("nginx:1.27", "registry-1.docker.io", "library/nginx", "1.27"),
        ("team/shop:abc123", "registry-1.docker.io", "team/shop", "abc123"),
        ("docker.io/nginx:1", "registry-1.docker.io", "library/nginx", "1"),
        ("index.docker.io/team/shop:v1", "registry-1.docker.io", "team/shop", "v1"),
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1"),
        ("quay.io/org/team/app:v1", "quay.io", "org/team/app", "v1"),
        ("localhost/app:v1", "localhost", "app", "v1"),
        ("localhost:5000/team/app:v1", "localhost:5000", "team/app", "v1"),
        ("ghcr.io/org/app:v1@sha256:" + "a" * 64, "ghcr.io", "org/app", "sha256:" + "a" * 64),
        ("app@sha256:" + "b" * 64, "registry-1.docker.io", "library/app", "sha256:" + "b" * 64),
    ],
)
def test_references_are_read_as_docker_reads_them(image, host, name, reference):
    assert parse_reference(image) == Reference(host, name, reference)


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("nginx", "has no tag"),
        ("ghcr.io/org/app", "has no tag"),
        ("localhost:5000/app", "has no tag"),
        ("ghcr.io/Org/App:v1", "no valid repository name"),
        ("ghcr.io/org/app@sha256", "malformed digest"),
        ("ghcr.io/org/app:-v1", "malformed tag"),
    ],
)
def test_a_malformed_reference_is_refused(image, problem):
    with pytest.raises(TargetRefused, match=problem):
        parse_reference(image)


def test_only_this_machine_is_spoken_to_over_plain_http():
    assert parse_reference("localhost:5000/app:v1").manifest_url.startswith("http://")
    assert parse_reference("127.0.0.1:5000/app:v1").manifest_url.startswith("http://")
    assert parse_reference("ghcr.io/org/app:v1").manifest_url == (
        "https://ghcr.io/v2/org/app/manifests/v1"
    )
    assert credential_variables("ghcr.io") == (
        "FC_REGISTRY_USER_GHCR_IO",
        "FC_REGISTRY_PASSWORD_GHCR_IO",
    )
