"""The demo's images for a Docker host, built here from Debian's static busybox, never pulled.

The demo runs with no registry and no internet, so its images are made on the engine itself:

- a base image, `fatcontroller-demo/busybox:<digest of the binary>`: a root filesystem of
  /usr/bin/busybox (Debian's busybox-static: one binary, no libraries) and its applets as
  symlinks, made as a tar here and imported;
- the demo's HTTP server, `fatcontroller-demo/http:<version>`, built from the base with no
  pull: busybox httpd serving a page that names the version on $PORT (8080 unless set), with
  a HEALTHCHECK that fetches that page with busybox wget. Containers use the host's network
  (the engines here have no bridge), so each replica is given its own PORT;
- its OOM variant (oom=True), under the same name so a build of the demo's OOM branch can
  yield it as its version: its command allocates until a hard memory limit kills it.

Building is idempotent: an image already there, built by the same recipe, is reused; one
under the same tag built by another recipe (the OOM variant, say) is rebuilt.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import tarfile
from pathlib import Path

BUSYBOX = Path("/usr/bin/busybox")
BASE_REPOSITORY = "fatcontroller-demo/busybox"
HTTP_REPOSITORY = "fatcontroller-demo/http"
DEFAULT_PORT = 8080
RECIPE_LABEL = "org.fatcontroller.demo.recipe"
APPLETS = (
    "sh", "httpd", "wget", "sleep", "echo", "cat", "ls", "env", "kill", "true", "false",
    "head", "mkdir", "rm", "ps", "printf", "test", "[",
)  # fmt: skip

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's rule for a tag

# Busybox httpd in the foreground, serving /www, under a shell that passes a stop's SIGTERM
# on. Not exec'd: as a container's PID 1, httpd would ignore SIGTERM (the kernel drops a
# signal PID 1 has no handler for), and every stop would wait out its stop_timeout.
_SERVE = (
    f'httpd -f -p "${{PORT:-{DEFAULT_PORT}}}" -h /www & '
    'trap \'kill -TERM "$!"; wait "$!"; exit 0\' TERM; wait "$!"'
)
# Doubles a string until the kernel's OOM killer ends it under a hard memory limit.
_ALLOCATE = "x=a; while true; do x=$x$x; done"

_DOCKERFILE = """\
FROM {base}
COPY index.html /www/index.html
LABEL {label}="{recipe}"
ENV PORT={port}
HEALTHCHECK --interval=1s --timeout=2s --start-period=5s --retries=3 \\
    CMD wget -q -O /dev/null "http://127.0.0.1:${{PORT}}/" || exit 1
CMD ["sh", "-c", {command}]
"""


class NoBusybox(Exception):
    """Debian's busybox-static is not installed, so no image can be made."""


def base_image(client) -> str:
    """The base image's tag, imported from a tar of busybox unless it is there already."""
    if not BUSYBOX.exists():
        raise NoBusybox(f"{BUSYBOX} is missing (apt-get install busybox-static)")
    digest = hashlib.sha256(BUSYBOX.read_bytes()).hexdigest()[:12]
    tag = f"{BASE_REPOSITORY}:{digest}"
    if _exists(client, tag):
        return tag
    client.api.import_image_from_data(_rootfs(), repository=BASE_REPOSITORY, tag=digest)
    return tag


def demo_image(client, version: str, *, oom: bool = False) -> str:
    """fatcontroller-demo/http:<version>, built from the base with no pull unless a build of
    the same recipe is there; oom=True: the variant that allocates past its memory limit."""
    if not _TAG.fullmatch(version):
        raise ValueError(f"{version!r} cannot be an image tag (letters, digits, _ . -)")
    base = base_image(client)
    command = _ALLOCATE if oom else _SERVE
    page = _page(version, oom)
    recipe = hashlib.sha256(f"{base}\n{command}\n{page}".encode()).hexdigest()[:16]
    tag = f"{HTTP_REPOSITORY}:{version}"
    existing = _get(client, tag)
    if existing is not None and existing.labels.get(RECIPE_LABEL) == recipe:
        return tag
    dockerfile = _DOCKERFILE.format(
        base=base,
        label=RECIPE_LABEL,
        recipe=recipe,
        port=DEFAULT_PORT,
        command=json.dumps(command),
    )
    context = _context({"Dockerfile": dockerfile, "index.html": page})
    client.images.build(
        fileobj=context, custom_context=True, tag=tag, pull=False, rm=True, forcerm=True
    )
    return tag


def _rootfs() -> bytes:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for folder in ("bin", "tmp", "www"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return data.getvalue()


def _context(files: dict[str, str]) -> io.BytesIO:
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, text in files.items():
            body = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
    data.seek(0)
    return data


def _page(version: str, oom: bool) -> str:
    what = "allocates until it is OOM-killed" if oom else "serves this page"
    shown = html.escape(version)
    return (
        f"<!doctype html><title>demo {shown}</title>"
        f"<p>Fat Controller demo, version <b>{shown}</b>: {what}.</p>\n"
    )


def _get(client, tag: str):
    import docker.errors

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def _exists(client, tag: str) -> bool:
    return _get(client, tag) is not None
