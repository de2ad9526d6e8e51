"""The Docker demo: a second demo application whose deploys are real containers.

`manage.py demo` sets it up only where a Docker engine answers (DOCKER_HOST, or the default
socket): a small git remote under var/demo, and demo-boxes.fatcontroller.yml, next to this
file, with its Docker host's address filled in from the engine that answered. Its build
script runs its checks, then builds the image on that engine with
devtools.docker_images.demo_image (from Debian's busybox, never pulled), tagged
$FC_IMAGE_REPOSITORY:$FC_IMAGE_TAG, the image the rollout deploys; OOM_BRANCH's image
allocates past the containers' hard memory limit, so its deploy meets a real OOM kill and
the rollout restores what ran before.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from pathlib import Path

from devtools.demo import build_remote

DEMO_SLUG = "demo-boxes"
CONFIG_FILE = Path(__file__).resolve().with_name("demo-boxes.fatcontroller.yml")
# The script the build runs, with the Python that has the docker SDK (Fat Controller's):
# the build's environment is a plain one, so the build command names both, and the engine.
IMAGE_BUILDER = Path(__file__).resolve().with_name("build_demo_image.py")
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DOCKER_CLUSTER = "demo-box"
OOM_BRANCH = "feature/boxes-oom"
CLEAN_BRANCH = "feature/boxes-greeting"

BUILD_SH = """#!/bin/sh
# The demo's build: its checks, then the image, built on the Docker host the demo deploys
# to. Called as: sh build.sh PYTHON BUILDER DOCKER_HOST (the build command says which).
set -e
echo "== building demo-boxes, attempt ${FC_BUILD_ATTEMPT:-1}"
for check in checks/*.sh; do
    echo "-- $check"
    sh "$check"
done
echo "-- image"
DOCKER_HOST="$3" "$1" "$2"
"""

MAIN_FILES = {
    "README.md": "# Demo boxes\n\nA pretend service that Fat Controller ships as containers.\n",
    "build.sh": BUILD_SH,
    # What the image does: {"oom": true} makes the variant that runs out of memory.
    "box.json": '{"oom": false}\n',
    "checks/lint.sh": 'echo "lint: 2 files, no problems"\n',
    "checks/unit.sh": 'echo "unit: 5 tests passed"\n',
}

# branch -> (commit message, files it changes)
BRANCHES = {
    CLEAN_BRANCH: (
        "Greet visitors",
        {"greeting.txt": "Hello from a box.\n"},
    ),
    # Builds green, but its containers allocate until the kernel kills them at their memory
    # limit: the first batch is OOM-killed, the rollout restores the containers that ran.
    OOM_BRANCH: (
        "Keep every box in memory",
        {"box.json": '{"oom": true}\n'},
    ),
}


def engine_host() -> str:
    """Where the demo looks for an engine: DOCKER_HOST, or the default socket."""
    return os.environ.get("DOCKER_HOST", "").strip() or DEFAULT_DOCKER_HOST


def engine_answers(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=5)
    except Exception:  # noqa: BLE001 - a malformed address or no docker config: no engine
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure to reach it means "does not answer"
        return False
    finally:
        client.close()


def build_command(docker_host: str) -> str:
    """The build command: build.sh told which Python builds the image, and where."""
    return shlex.join(["sh", "build.sh", sys.executable, str(IMAGE_BUILDER), docker_host])


def create_boxes_remote(remote: Path) -> Path:
    """Create the bare remote at `remote` once (built aside, moved into place); return it."""
    remote = Path(remote).absolute()
    if (remote / "HEAD").exists():
        return remote
    return build_remote(remote, "Start the demo boxes", MAIN_FILES, BRANCHES)


def boxes_config(docker_host: str, remote: Path):
    """The file's setup (appconfig.schema's AppConfig) with its Docker host at `docker_host`,
    its remote at `remote` and its build command naming both."""
    from appconfig.parse import parse_app_config  # needs Django's apps ready

    config = parse_app_config(CONFIG_FILE.read_text())
    config.clusters = {
        name: dataclasses.replace(cluster, docker_host=docker_host)
        if cluster.docker_host
        else cluster
        for name, cluster in config.clusters.items()
    }
    config.git_remote_url = str(remote)
    config.build_command = build_command(docker_host)
    return config
