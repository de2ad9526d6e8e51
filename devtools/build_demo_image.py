"""Build the Docker demo's image: run by demo-boxes' build.sh, in the candidate checkout.

Builds $FC_IMAGE_REPOSITORY:$FC_IMAGE_TAG on DOCKER_HOST's engine with
devtools.docker_images.demo_image, never pulling; box.json's "oom" says which variant. Run
as a script by Fat Controller's own Python (the build command names it), so the project's
folder is put on the path first.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools.docker_images import HTTP_REPOSITORY, NoBusybox, demo_image  # noqa: E402


def main() -> int:
    import docker

    repository = os.environ.get("FC_IMAGE_REPOSITORY", "")
    tag = os.environ.get("FC_IMAGE_TAG", "")
    host = os.environ.get("DOCKER_HOST", "")
    if repository != HTTP_REPOSITORY:
        print(f"image: the demo builds {HTTP_REPOSITORY} only, not {repository or 'nothing'}")
        return 1
    if not tag or not host:
        print("image: no FC_IMAGE_TAG or DOCKER_HOST to build for")
        return 1
    oom = bool(json.loads(Path("box.json").read_text()).get("oom"))
    client = docker.DockerClient(base_url=host, timeout=120)
    try:
        built = demo_image(client, tag, oom=oom)
    except (NoBusybox, docker.errors.DockerException) as exc:
        print(f"image: could not build {repository}:{tag} on {host}: {exc}")
        return 1
    finally:
        client.close()
    what = "allocates past its memory limit" if oom else "serves its page"
    print(f"image: built {built} on {host}, never pulled; it {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
