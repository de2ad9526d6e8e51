"""The Docker engine the tests use is real: it runs containers, enforces a hard memory limit
with the kernel's OOM killer, and is stopped by its pid at the end of the run."""

import io
import tarfile
from pathlib import Path

import pytest

from clusters.targets.docker_replicas import oom_killed

pytestmark = pytest.mark.docker

BUSYBOX = Path("/usr/bin/busybox")  # Debian's busybox-static: one binary, no libraries


def busybox_image(client, tag: str = "fc-test-busybox:1") -> str:
    """An image of Debian's static busybox alone, imported from a tar made here (no pull)."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "cat", "httpd"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    client.api.import_image_from_data(data.getvalue(), repository=tag.split(":")[0], tag="1")
    return tag


def test_a_container_over_its_hard_memory_limit_is_oom_killed(docker_engine):
    client = docker_engine.client()
    image = busybox_image(client)
    container = client.containers.run(
        image,
        ["/bin/sh", "-c", "x=a; while true; do x=$x$x; done"],
        detach=True,
        network_mode="none",
        mem_limit="16m",
        memswap_limit="16m",
        labels={"org.fatcontroller.test": "oom"},
    )
    try:
        result = container.wait(timeout=60)
        container.reload()
        assert result["StatusCode"] == 137
        # The engine's word, flag or "oom" event: the two can cross on a busy host.
        assert oom_killed(container)
    finally:
        container.remove(force=True)
        client.close()
