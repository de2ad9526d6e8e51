"""What the Docker target's tests share: a busybox image made here, a placement's config, a
Ledger in memory (the fixtures that use them are in conftest.py)."""

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from clusters.targets.docker_replicas import PLACEMENT, REVISION

BUSYBOX = Path("/usr/bin/busybox")
APPLETS = ("sh", "sleep", "echo", "cat", "httpd", "wget", "false")
PORT = 8080  # each container has its own network namespace (network "none"): no clashes
HEALTHY = {"test": ["CMD", "wget", "-q", "-O", "-", f"http://127.0.0.1:{PORT}/"]}
# start_period: httpd may take more than two checks to listen on a busy machine; checks
# failing before it do not count, and the first that passes ends it.
FAST = {"interval": 0.2, "timeout": 1, "retries": 2, "start_period": 3}


def busybox_image(client, repository: str) -> str:
    """Debian's static busybox with the applets the tests use and a page to serve."""
    client.api.import_image_from_data(busybox_rootfs(), repository=repository, tag="1")
    return f"{repository}:1"


def busybox_rootfs(marker: str = "") -> bytes:
    """That image's root filesystem, as a tar; a `marker` (in /marker) makes its layer one no
    other image shares."""
    if not BUSYBOX.exists():
        pytest.skip("busybox-static is not installed (apt-get install busybox-static)")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
        for name, text in (("www/index.html", "hello\n"), ("marker", marker)):
            if text:
                info = tarfile.TarInfo(name)
                info.size = len(text.encode())
                tar.addfile(info, io.BytesIO(text.encode()))
    return data.getvalue()


def web(version: str, **more) -> dict[str, Any]:
    """Three busybox httpd replicas, healthy once they answer."""
    return {
        "replicas": 3,
        "command": ["httpd", "-f", "-p", str(PORT), "-h", "/www"],
        "env": {"VERSION": version},
        "network": "none",
        "healthcheck": {**HEALTHY, **FAST},
        "memory": "32m",
        "stop_timeout": 1,
        "grace": 0.5,
        **more,
    }


def containers(engine, placement) -> list:
    return engine.containers.list(all=True, filters={"label": f"{PLACEMENT}={placement.pk}"})


def run_labelled(engine, image, placement_id: str, revision: str, command, **more):
    """A container started straight on the engine, labelled as one of a placement's
    revisions, with no network and a hard memory limit of 16m."""
    return engine.containers.run(
        image,
        command,
        detach=True,
        network_mode="none",
        mem_limit="16m",
        labels={PLACEMENT: placement_id, REVISION: revision},
        **more,
    )
