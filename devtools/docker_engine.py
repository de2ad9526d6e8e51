"""A real Docker engine for the tests that need one (the `docker_engine` fixture in
tests/conftest.py) and for `make bench`.

Where DOCKER_HOST is set, that engine is used as it is. Otherwise, as root where Debian's
docker.io is installed, a private dockerd is started for the run and stopped by its pid at
the end, leaving the machine as it was:

    dockerd --storage-driver=vfs --iptables=false --bridge=none --data-root D/data
            --exec-root D/exec -H unix://D/docker.sock --pidfile D/dockerd.pid

(vfs needs no kernel overlay support; with no bridge and no iptables, containers run on the
host's network or none.) Where neither is possible the Docker tests are skipped, loudly,
with the reason; in CI (CI set) that is a failure instead, so a CI run never passes without
them. D is under /tmp, whatever the test's folders: a unix socket's path must stay short.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 60.0  # a ceiling for dockerd's start on a busy 2-core machine
STOP_TIMEOUT = 30.0


class NoEngine(Exception):
    """No Docker engine can be had here; the message says why."""


@dataclass
class DockerEngine:
    host: str  # what DOCKER_HOST would say: unix:///tmp/fc-dockerd-x/docker.sock
    folder: Path | None = None  # the private engine's folder; None: DOCKER_HOST's engine
    process: subprocess.Popen | None = None

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, timeout=30)

    @property
    def log(self) -> str:
        if self.folder is None:
            return ""
        path = self.folder / "dockerd.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def answers(host: str) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure to reach it means "does not answer"
        return False


def engine_from_environment() -> DockerEngine | None:
    host = os.environ.get("DOCKER_HOST", "").strip()
    if not host:
        return None
    if not answers(host):
        raise NoEngine(f"DOCKER_HOST is {host}, but no Docker engine answers there")
    return DockerEngine(host)


def start_private_engine() -> DockerEngine:
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise NoEngine("dockerd is not installed (Debian's docker.io: apt-get install docker.io)")
    if os.geteuid() != 0:
        raise NoEngine("dockerd needs root, and the tests do not run as root")
    folder = Path(tempfile.mkdtemp(prefix="fc-dockerd-", dir="/tmp"))
    socket = folder / "docker.sock"
    command = [
        dockerd,
        "--storage-driver=vfs",
        "--iptables=false",
        "--bridge=none",
        "--data-root",
        str(folder / "data"),
        "--exec-root",
        str(folder / "exec"),
        "-H",
        f"unix://{socket}",
        "--pidfile",
        str(folder / "dockerd.pid"),
    ]
    with open(folder / "dockerd.log", "wb") as log:
        process = subprocess.Popen(  # noqa: S603 - a fixed argument list
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    engine = DockerEngine(f"unix://{socket}", folder, process)
    deadline = time.monotonic() + START_TIMEOUT
    while not (socket.exists() and answers(engine.host)):
        if process.poll() is not None:
            log_tail = engine.log
            shutil.rmtree(folder, ignore_errors=True)
            raise NoEngine(f"dockerd exited with {process.returncode}: {log_tail[-600:]}")
        if time.monotonic() > deadline:
            stop_private_engine(engine)
            raise NoEngine(f"dockerd did not answer within {START_TIMEOUT:g} s")
        time.sleep(0.1)
    return engine


def stop_private_engine(engine: DockerEngine) -> None:
    """Remove what the tests left running, stop dockerd by its pid, remove its folder."""
    if engine.process is None:
        return
    if engine.process.poll() is None:
        try:
            client = engine.client()
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.close()
        except Exception:  # noqa: BLE001, S110 - stopping dockerd ends them anyway
            pass
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait(timeout=STOP_TIMEOUT)
    if engine.folder is not None:
        _unmount_under(engine.folder)
        shutil.rmtree(engine.folder, ignore_errors=True)


def _unmount_under(folder: Path) -> None:
    """Unmount what a dockerd that died without cleaning up left mounted in its folder (its
    network namespace's nsfs, say), deepest first, so the folder can be removed."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = f"{folder}/"
    left = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for path in sorted((p for p in left if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", path], check=False, capture_output=True)  # noqa: S603, S607


def must_run_docker_tests() -> bool:
    """In CI the Docker tests may not be skipped."""
    return bool(os.environ.get("CI"))
