"""The demo application: a small git remote whose branches show what Fat Controller does.

Made once under var/demo. Its build script really runs, in the candidate checkout, so the
demo's builds pass, fail and flake for real; a build that passes publishes its image (a
manifest put into ECR, with the standard library only) when AWS_ENDPOINT_URL says where AWS
is, as it does in the embedded default, whose `runmoto` simulates AWS. The demo's services
and how they roll out are in demo-shop.fatcontroller.yml, next to this file.
"""

import os
import subprocess
import tempfile
from pathlib import Path

DEMO_SLUG = "demo-shop"
BUILD_COMMAND = "sh build.sh"
# The application's setup (build, image repository, rollout pacing, services and placements),
# loaded by `manage.py demo`; `manage.py runmoto` makes the AWS side it names.
CONFIG_FILE = Path(__file__).resolve().with_name("demo-shop.fatcontroller.yml")
# The annotation of the image's manifest that says how the image's tasks fare on the
# simulated ECS (devtools.ecs_simulator's behave_by_image_annotation).
BEHAVIOUR_ANNOTATION = "org.fatcontroller.demo.behaviour"
OOM_BRANCH = "feature/oom-on-boot"
LEAK_BRANCH = "feature/leaky-cache"
# Its image runs on ECS, but the demo's legacy deploy job fails on it (devtools/legacy_jobs.py
# reads the same annotation): the rollout restores the ECS side too.
LEGACY_FAILS = "legacy-fails"
LEGACY_FAILS_BRANCH = "feature/legacy-job-fails"

PUBLISH_IMAGE = r'''"""Publish the demo's image: its manifest, put into ECR.

It goes to $FC_IMAGE_REPOSITORY:$FC_IMAGE_TAG, the image the rollout deploys.

The demo has no Docker: its "image" is a manifest with made-up layers, pushed with ECR's
PutImage to AWS_ENDPOINT_URL (the simulated AWS of Fat Controller's embedded default). Only
the standard library and no credentials: the simulated AWS does not check signatures.
image.json holds the manifest's annotations; the simulated ECS reads
org.fatcontroller.demo.behaviour to know how the image's tasks fare ("oom": they run out of
memory as they boot), and the demo's legacy deploy jobs read it too ("legacy-fails": the
release does not come up on the legacy hosts).
"""

import hashlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

ECR_HOST = re.compile(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def main():
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    repository = os.environ.get("FC_IMAGE_REPOSITORY", "")
    tag = os.environ.get("FC_IMAGE_TAG", "")
    if not endpoint:
        print("publish: AWS_ENDPOINT_URL is not set, so there is no registry: skipped")
        return 0
    if not repository or not tag:
        print("publish: no FC_IMAGE_REPOSITORY or FC_IMAGE_TAG to push to: skipped")
        return 0
    host, _, name = repository.partition("/")
    match = ECR_HOST.match(host)
    if not match or not name:
        print(f"publish: {repository} is not an ECR repository (ACCOUNT.dkr.ecr.REGION...)")
        return 1
    account, region = match.groups()
    with open("image.json") as file:
        annotations = json.load(file).get("annotations", {})
    source = os.environ.get("FC_CANDIDATE_SHA") or tag
    layer = hashlib.sha256(f"{name} {source}".encode()).hexdigest()
    config = hashlib.sha256(json.dumps([source, annotations]).encode()).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": f"sha256:{config}",
            "size": 1024,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": f"sha256:{layer}",
                "size": 24 * 1024 * 1024,
            }
        ],
        "annotations": annotations,
    }
    body = {
        "registryId": account,
        "repositoryName": name,
        "imageTag": tag,
        "imageManifest": json.dumps(manifest, sort_keys=True),
    }
    now = time.gmtime()
    request = urllib.request.Request(
        endpoint.rstrip("/") + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.PutImage",
            "X-Amz-Date": time.strftime("%Y%m%dT%H%M%SZ", now),
            # Signed by nobody: the scope names the service and region, which is how the
            # simulated AWS routes the request.
            "Authorization": "AWS4-HMAC-SHA256 Credential=demo/"
            + time.strftime("%Y%m%d", now)
            + f"/{region}/ecr/aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    print(f"publish: pushing {repository}:{tag} to {endpoint}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read() or b"{}")
        except ValueError:
            error = {}
        code = str(error.get("__type", "")).rsplit("#", 1)[-1]
        message = error.get("message") or error.get("Message") or exc.reason
        if code == "ImageAlreadyExistsException":
            print(f"publish: {repository}:{tag} is already there, the same image")
            return 0
        status = " ".join(part for part in (str(exc.code), code) if part)
        print(f"publish: ECR refused the image ({status}): {message}")
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"publish: could not reach ECR at {endpoint}: {getattr(exc, 'reason', exc)}")
        return 1
    digest = answer.get("image", {}).get("imageId", {}).get("imageDigest", "?")
    words = ", ".join(f"{key}={value}" for key, value in sorted(annotations.items()))
    print(f"publish: pushed {repository}:{tag} ({digest})" + (f"; {words}" if words else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

IMAGE_JSON = """{
  "annotations": {
    "org.opencontainers.image.title": "demo-shop"
  }
}
"""

MAIN_FILES = {
    "README.md": "# Demo shop\n\nA pretend shop that Fat Controller ships in its demo.\n",
    "VERSION": "1.0.0\n",
    "shop/prices.txt": "apple 0.40\npear 0.55\nplum 0.30\n",
    "build.sh": """#!/bin/sh
# The demo's build: three checks, each a script under checks/, run one after another; when
# they pass, the image is published as $FC_IMAGE_REPOSITORY:$FC_IMAGE_TAG.
set -e
echo "== building demo-shop, attempt ${FC_BUILD_ATTEMPT:-1}"
for check in lint unit integration; do
    echo "-- $check"
    sh "checks/$check.sh"
    sleep 1
done
echo "== all checks passed"
echo "-- publish"
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
    echo "publish: AWS_ENDPOINT_URL is not set, so there is no registry: skipped"
else
    python3 publish_image.py
fi
""",
    "publish_image.py": PUBLISH_IMAGE,
    "image.json": IMAGE_JSON,
    "checks/lint.sh": 'echo "lint: 3 files, no problems"\n',
    "checks/unit.sh": 'echo "unit: 12 tests passed"\n',
    "checks/integration.sh": 'echo "integration: 4 tests passed"\n',
}

# branch -> (commit message, files it changes)
BRANCHES = {
    "feature/clean-merge": (
        "Add an about page",
        {"shop/about.txt": "We sell fruit.\n"},
    ),
    "feature/flaky-test": (
        "Add a checkout test that flakes",
        {
            "checks/integration.sh": """# This branch's first build meets a flaky timeout. Only
# this branch's: once it is merged, other branches' candidates are not held up by it.
branch="${FC_BRANCH:-feature/flaky-test}"
if [ "${FC_BUILD_ATTEMPT:-1}" = "1" ] && [ "$branch" = "feature/flaky-test" ]; then
    echo "FAIL test_checkout: timed out waiting for the payment stub (flaky)"
    exit 1
fi
echo "integration: 5 tests passed"
""",
        },
    ),
    "feature/broken-build": (
        "Change prices without updating the tests",
        {
            "checks/unit.sh": 'echo "FAIL test_prices: expected apple 0.40, got 0.45"\nexit 1\n',
        },
    ),
    "feature/conflicting-prices": (
        "Raise the price of pears",
        {"shop/prices.txt": "apple 0.40\npear 0.65\nplum 0.30\n"},
    ),
    # Builds green, but its image runs out of memory as it boots on ECS: the rollout's first
    # phase fails and is rolled back, and nothing is merged.
    OOM_BRANCH: (
        "Warm the whole catalogue into memory at boot",
        {
            "shop/boot.txt": "warm caches: the whole catalogue, every photo, at full size\n",
            "image.json": IMAGE_JSON.replace(
                '"demo-shop"\n', f'"demo-shop",\n    "{BEHAVIOUR_ANNOTATION}": "oom"\n'
            ),
        },
    ),
    # Builds green, rolls out and is merged, then its memory grows until each task is
    # OOM-killed, and ECS places it on the next host: the crash loop check sees two hosts
    # killed and restores the revision before it (the cluster page shows the report).
    LEAK_BRANCH: (
        "Keep every rendered page in an unbounded in-memory cache",
        {
            "shop/cache.txt": "cache: every rendered page, for ever (no eviction)\n",
            "image.json": IMAGE_JSON.replace(
                '"demo-shop"\n', f'"demo-shop",\n    "{BEHAVIOUR_ANNOTATION}": "leak"\n'
            ),
        },
    ),
    # Builds green and runs on ECS, but does not come up on the legacy hosts (it needs a
    # setting only the new side has): where its services run on both sides, the legacy job
    # fails and the rollout restores both sides; nothing is merged.
    LEGACY_FAILS_BRANCH: (
        "Read the queue's address from LEGACY_QUEUE_URL",
        {
            "shop/queue.txt": "queue: from LEGACY_QUEUE_URL, which only the ECS tasks define\n",
            "image.json": IMAGE_JSON.replace(
                '"demo-shop"\n', f'"demo-shop",\n    "{BEHAVIOUR_ANNOTATION}": "{LEGACY_FAILS}"\n'
            ),
        },
    ),
}

# Lands on main after the branches were cut, so feature/conflicting-prices conflicts.
MAIN_AFTER_BRANCHES = (
    "Lower the price of pears",
    {"shop/prices.txt": "apple 0.40\npear 0.50\nplum 0.30\n"},
)


# Files a demo remote made before builds published their image lacks; brought in by one
# commit on main (see _bring_up_to_date), with the branches added since.
PUBLISHING_FILES = ("build.sh", "publish_image.py", "image.json")


def create_demo_remote(remote: Path) -> Path:
    """Create the bare remote at `remote` (once) and return it.

    A remote made by an older demo is brought up to date instead: main gets the publishing
    build in a commit of its own if it lacks it, and the branches added since appear (cut from
    main as it is then); nothing else changes.
    """
    # Absolute: git runs in other folders below, and a relative path (FC_VAR_DIR=var/x)
    # would land its commits in whatever repository encloses the current one.
    remote = Path(remote).absolute()
    if (remote / "HEAD").exists():
        _bring_up_to_date(remote)
        return remote
    return build_remote(
        remote, "Start the demo shop", MAIN_FILES, BRANCHES, main_after=MAIN_AFTER_BRANCHES
    )


def build_remote(remote: Path, first: str, main_files, branches, *, main_after=None) -> Path:
    """A bare remote at `remote`: main with `main_files` (committed as `first`), each branch
    of `branches` ({name: (message, files)}) cut from it, then `main_after` (a message and
    files) on main. Built aside and moved into place, so a run stopped halfway leaves nothing
    half made."""
    remote.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=remote.parent) as scratch:
        bare, work = Path(scratch) / "remote.git", Path(scratch) / "seed"
        _git(Path(scratch), "init", "-q", "--bare", "--initial-branch=main", str(bare))
        _git(Path(scratch), "init", "-q", "--initial-branch=main", str(work))
        _commit(work, first, main_files)
        for branch, (message, files) in branches.items():
            _git(work, "checkout", "-q", "-b", branch, "main")
            _commit(work, message, files)
        _git(work, "checkout", "-q", "main")
        if main_after is not None:
            _commit(work, *main_after)
        _git(work, "push", "-q", str(bare), "--all")
        bare.rename(remote)
    return remote


def _bring_up_to_date(remote: Path) -> None:
    has_publish = subprocess.run(
        ["git", "--git-dir", str(remote), "cat-file", "-e", "refs/heads/main:publish_image.py"],
        capture_output=True,
        timeout=60,
    )
    branches = subprocess.run(
        [
            "git",
            "--git-dir",
            str(remote),
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    missing = [branch for branch in BRANCHES if branch not in branches]
    if has_publish.returncode == 0 and not missing:
        return
    with tempfile.TemporaryDirectory(dir=remote.parent) as scratch:
        work = Path(scratch) / "upgrade"
        _git(Path(scratch), "clone", "-q", "--branch", "main", str(remote), str(work))
        pushed = []
        if has_publish.returncode != 0:
            _commit(
                work,
                "Publish the image when the build passes",
                {name: MAIN_FILES[name] for name in PUBLISHING_FILES},
            )
            pushed.append("main")
        for branch in missing:  # a newer demo's branches, cut from main as it is now
            message, files = BRANCHES[branch]
            _git(work, "checkout", "-q", "-b", branch, "main")
            _commit(work, message, files)
            pushed.append(branch)
        _git(work, "push", "-q", "origin", *pushed)  # main fast-forwards: never forced


def _commit(work: Path, message: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(work, "add", "--all")
    _git(work, "commit", "-q", "-m", message)


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo Developer",
        "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "Demo Developer",
        "GIT_COMMITTER_EMAIL": "demo@example.com",
        # Never a repository above `cwd`: the demo's commits go into the demo's, or fail.
        "GIT_CEILING_DIRECTORIES": str(Path(cwd).absolute().parent),
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, timeout=60)


def demo_config():
    """The demo application's setup, parsed from CONFIG_FILE (appconfig.schema's AppConfig)."""
    from appconfig.parse import parse_app_config  # needs Django's apps ready

    return parse_app_config(CONFIG_FILE.read_text())
