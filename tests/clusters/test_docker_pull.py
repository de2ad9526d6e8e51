"""An image that names its registry and is not on the Docker host is pulled before anything
changes, with the registry's credentials from the environment: a real engine pulling from the
stand-in registry on this machine (tests/registry_standin.py), never from the internet."""

import secrets

import pytest

from clusters.targets import target_for
from clusters.targets.base import Progress, TargetRefused, Watch
from clusters.targets.registry import credential_variables, names_registry
from tests.registry_standin import RegistryStandin

from .docker_world import busybox_rootfs, containers
from .ledgers import Ledger

pytestmark = pytest.mark.docker

USERS = {"robot": "s3cret-pull-token"}
RUN = {"Cmd": ["sh"], "Env": ["PATH=/bin"]}


@pytest.fixture(params=["bearer", "basic"])
def registry(request, engine):
    with RegistryStandin(auth=request.param, users=USERS) as standin:
        # A layer of its own, so that the engine has none of it yet and must fetch it all.
        layer = busybox_rootfs(marker=secrets.token_hex(8))
        standin.push_image("team/shop", "7", layer=layer, config=RUN, private=True)
        yield standin
        forget(engine, f"{standin.host}/team/shop:7")


@pytest.fixture
def credentials(registry, monkeypatch):
    user_var, password_var = credential_variables(registry.host)
    monkeypatch.setenv(user_var, "robot")
    monkeypatch.setenv(password_var, USERS["robot"])


def on_host(engine, image: str) -> bool:
    return any(image in (i.tags or []) for i in engine.images.list())


def forget(engine, image: str) -> None:
    if on_host(engine, image):
        engine.images.remove(image, force=True)


def test_a_missing_image_is_pulled_with_the_registrys_credentials_and_runs(
    engine, placement, registry, credentials
):
    image = f"{registry.host}/team/shop:7"
    target = target_for(placement)

    assert target.image_exists(image) is True

    assert on_host(engine, image)
    blobs = [r for r in registry.requests if "/blobs/" in r.path and r.method == "GET"]
    assert len({r.path for r in blobs}) == 2  # the config and the layer
    assert all("Authorization" in r.headers for r in blobs)
    ledger = Ledger()
    handle = target.start(placement, image, ledger)
    (seen,) = target.observe([Watch(placement, handle, ledger.revision_made, wait=60)])
    assert (seen.progress, seen.running) == (Progress.OUT, 3), seen.reason
    assert {c.image.tags[0] for c in containers(engine, placement)} == {image}


def test_without_credentials_the_refusal_names_the_variables_and_nothing_is_pulled(
    engine, placement, registry
):
    image = f"{registry.host}/team/shop:7"

    with pytest.raises(TargetRefused) as refused:
        target_for(placement).image_exists(image)

    for variable in credential_variables(registry.host):
        assert variable in str(refused.value)
    assert USERS["robot"] not in str(refused.value)
    assert not on_host(engine, image)
    assert not [r for r in registry.requests if "/blobs/" in r.path]


def test_a_tag_the_registry_does_not_have_is_missing(engine, placement, registry, credentials):
    assert target_for(placement).image_exists(f"{registry.host}/team/shop:8") is False


def test_an_image_that_names_no_registry_is_looked_for_on_the_host_only(engine, placement):
    # Docker Hub would be implied: never asked, so a test cannot reach the internet.
    assert target_for(placement).image_exists("fc-test-nowhere/shop:1") is False


@pytest.mark.parametrize(
    ("image", "named"),
    [
        ("ghcr.io/team/shop:1", True),
        ("localhost:5000/shop:1", True),
        ("localhost/shop:1", True),
        ("127.0.0.1:5000/team/shop@sha256:" + "a" * 64, True),
        ("team/shop:1", False),
        ("nginx", False),
        ("fatcontroller-demo/http:v1", False),
    ],
)
def test_names_registry(image, named):
    assert names_registry(image) is named
