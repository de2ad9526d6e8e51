"""The demo's images are built on the engine from Debian's busybox with no pull: the HTTP
server answers on the host's network and turns healthy, its OOM variant is OOM-killed under
a hard memory limit, and a second build of the same recipe reuses the image."""

import time
import urllib.request

import pytest

from clusters.targets.docker_replicas import oom_killed
from devtools import docker_images
from tests.ports import closed_port
from tests.waiting import wait_until

pytestmark = pytest.mark.docker


@pytest.fixture
def client(docker_engine):
    if not docker_images.BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    client = docker_engine.client()
    yield client
    for container in client.containers.list(all=True, filters={"label": "org.fatcontroller.test"}):
        container.remove(force=True)
    client.close()


def pulls_since(client, since: int) -> list:
    events = client.events(
        since=since, until=int(time.time()) + 1, decode=True, filters={"event": "pull"}
    )
    return list(events)


def test_the_http_image_is_built_with_no_pull_and_reused_when_there(client):
    since = int(time.time()) - 1
    tag = docker_images.demo_image(client, "1.0-test")
    assert tag == "fatcontroller-demo/http:1.0-test"
    image = client.images.get(tag)
    base = client.images.get(docker_images.base_image(client))
    assert image.attrs["RootFS"]["Layers"][0] == base.attrs["RootFS"]["Layers"][0]
    assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD-SHELL"
    assert pulls_since(client, since) == []

    assert docker_images.demo_image(client, "1.0-test") == tag
    assert client.images.get(tag).id == image.id  # the same recipe: not built again


def test_a_container_of_it_answers_http_on_the_host_network_and_turns_healthy(client):
    tag = docker_images.demo_image(client, "2.5-test")
    port = closed_port()
    container = client.containers.run(
        tag,
        detach=True,
        network_mode="host",
        environment={"PORT": str(port)},
        mem_limit="32m",
        labels={"org.fatcontroller.test": "http"},
    )

    def page():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                return response.read().decode()
        except OSError:
            return ""

    body = wait_until(page, timeout=30, what=lambda: f"the page: {container.logs()!r}")
    assert "version <b>2.5-test</b>" in body

    def health():
        container.reload()
        return container.attrs["State"]["Health"]["Status"] == "healthy"

    wait_until(health, timeout=60, interval=0.2, what="the container to turn healthy")

    # A stop's SIGTERM ends it: PID 1 is a shell that passes the signal on and exits 0,
    # where an exec'd httpd as PID 1 would ignore it and be killed (137) after the timeout.
    container.stop(timeout=30)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0


def test_the_oom_variant_is_oom_killed_under_a_hard_memory_limit(client):
    tag = docker_images.demo_image(client, "3.0-test", oom=True)
    container = client.containers.run(
        tag,
        detach=True,
        network_mode="none",
        mem_limit="16m",
        memswap_limit="16m",
        labels={"org.fatcontroller.test": "oom"},
    )
    result = container.wait(timeout=60)
    container.reload()
    assert result["StatusCode"] == 137
    # The engine's word, flag or "oom" event: the two can cross on a busy host.
    assert oom_killed(container)


def test_the_same_tag_built_by_another_recipe_is_rebuilt(client):
    http = client.images.get(docker_images.demo_image(client, "4.0-test"))
    oom = client.images.get(docker_images.demo_image(client, "4.0-test", oom=True))
    assert oom.id != http.id
    assert oom.attrs["Config"]["Cmd"][-1] == docker_images._ALLOCATE


def test_a_version_that_cannot_be_a_tag_is_refused(client):
    with pytest.raises(ValueError, match="cannot be an image tag"):
        docker_images.demo_image(client, "1.0/../x")
