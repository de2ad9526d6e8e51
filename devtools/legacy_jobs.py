"""The demo's legacy deploy jobs: what the embedded default's stand-in Jenkins runs for them.

One job per legacy placement of demo-shop.fatcontroller.yml (legacy-deploy-<service>), taking
the parameters Fat Controller's legacy target sends (PARAMETERS: SERVICE, COMMIT, IMAGE,
VERSION, FC_REQUEST) and writing the console a deploy script on the old hosts would: pull the
image, put the release on each host in turn, check its health. A build takes a few seconds.

How a build ends is the image's to say, as it is on the simulated ECS: the annotation
devtools.demo.BEHAVIOUR_ANNOTATION of the image's manifest, read from ECR (boto3's
BatchGetImage against AWS_ENDPOINT_URL, the simulated AWS in the embedded default). An image
annotated LEGACY_FAILS fails its health check on the first host and the build fails; any
other image goes out. A VERSION whose image is not in ECR (a restore to the release the job
ran before Fat Controller deployed it, which was never pushed there) comes from the legacy
side's own release store and goes out too. ECR that cannot be asked fails the build, saying
why, as a pull that cannot reach its registry would.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from devtools.demo import BEHAVIOUR_ANNOTATION, DEMO_SLUG
from devtools.jenkins_standin import JenkinsStandin, Script

PARAMETERS = ("SERVICE", "COMMIT", "IMAGE", "VERSION", "FC_REQUEST")
# The annotation's value for an image whose legacy deploy fails (ECS runs it as any other).
LEGACY_FAILS = "legacy-fails"
BUILD_SECONDS = 4.0
HOSTS_PER_SERVICE = 2
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$"
)
# A job asks ECR once per build: short timeouts, so a registry that is away fails the build
# in seconds rather than hanging it past the rollout's phase timeout.
_ECR_CONFIG = Config(
    connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 2}
)


class RegistryUnreachable(Exception):
    """ECR could not be asked about the image (down, refused, no credentials)."""


def legacy_jobs(config) -> list[str]:
    """The legacy job of each legacy placement of an AppConfig, in the file's order."""
    return [
        placement.legacy_job
        for service in config.services
        for placement in service.placements
        if placement.legacy_job
    ]


def image_manifest(image: str, endpoint: str | None) -> dict | None:
    """The manifest of an ECR image (by tag or digest), None when ECR has no such image."""
    match = ECR_IMAGE.match(image)
    if match is None or not (match["tag"] or match["digest"]):
        return None
    ecr = boto3.session.Session().client(
        "ecr", region_name=match["region"], endpoint_url=endpoint or None, config=_ECR_CONFIG
    )
    image_id = {"imageDigest": match["digest"]} if match["digest"] else {"imageTag": match["tag"]}
    try:
        found = ecr.batch_get_image(
            registryId=match["account"],
            repositoryName=match["repository"],
            imageIds=[image_id],
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            return None
        raise RegistryUnreachable(str(exc)) from exc
    except BotoCoreError as exc:
        raise RegistryUnreachable(str(exc)) from exc
    for candidate in found.get("images", []):
        try:
            return json.loads(candidate.get("imageManifest") or "{}")
        except ValueError:
            return {}
    return None


def behaviour_of(manifest: dict | None) -> str:
    annotations = (manifest or {}).get("annotations")
    value = annotations.get(BEHAVIOUR_ANNOTATION) if isinstance(annotations, dict) else None
    return value if isinstance(value, str) else ""


def deploy_script(
    job: str, parameters: dict[str, str], *, endpoint: str | None, seconds: float = BUILD_SECONDS
) -> Script:
    """What one build of the demo's legacy deploy job `job` does with these parameters."""
    service = parameters.get("SERVICE") or job.removeprefix("legacy-deploy-")
    version, image = parameters.get("VERSION", ""), parameters.get("IMAGE", "")
    commit = parameters.get("COMMIT", "")
    process = f"{DEMO_SLUG}-{service}"
    hosts = [f"legacy-{service}-{n:02d}" for n in range(1, HOSTS_PER_SERVICE + 1)]
    lines = [f"+ ./deploy.sh --service {service} --version {version or '(none)'}"]
    if not version:
        return Script("fail", (*lines, "ERROR: no VERSION given: nothing to deploy", "+ exit 2"))
    what = f"{process} {version}" + (f" (commit {commit[:12]})" if commit else "")
    lines.append(f"Deploying {what} to {len(hosts)} hosts: {', '.join(hosts)}")
    manifest = None
    if image:
        lines.append(f"Pulling {image}")
        try:
            manifest = image_manifest(image, endpoint)
        except RegistryUnreachable as exc:
            return Script(
                "fail", (*lines, f"ERROR: cannot pull {image}: {exc}", "+ exit 1"), seconds
            )
    if manifest is not None:
        layers = manifest.get("layers") or [{}]
        digest = str(layers[0].get("digest", "sha256:?"))[:19]
        lines.append(f"{version}: Pull complete ({digest})")
    else:
        lines.append(f"Fetching release {version} from the release store: done")
    fails = behaviour_of(manifest) == LEGACY_FAILS
    for host in hosts:
        lines += [
            f"[{host}] draining {process}",
            f"[{host}] stopped {process}",
            f"[{host}] started {process} {version}",
        ]
        if fails:
            lines += [
                # Not "exited": the embedded tests read "worker exited" as the supervisor's word
                # for the Celery worker dying.
                f"[{host}] health check failed: {process} stopped with status 1 "
                "(LEGACY_QUEUE_URL is not set in /etc/demo-shop/env)",
                f"ERROR: {process} {version} did not come up on {host}; "
                f"{', '.join(h for h in hosts if h != host) or 'no other host'} left as it was",
                "+ exit 1",
            ]
            return Script("fail", tuple(lines), seconds)
        lines.append(f"[{host}] health check passed")
    lines.append(f"{process} {version} is live on {len(hosts)} hosts")
    return Script("succeed", tuple(lines), seconds)


def serve_demo_jobs(
    standin: JenkinsStandin,
    jobs: Iterable[str],
    *,
    endpoint: str | None = None,
    seconds: float = BUILD_SECONDS,
) -> None:
    """Give the stand-in the demo's legacy deploy jobs, each defining PARAMETERS."""
    endpoint = endpoint if endpoint is not None else os.environ.get("AWS_ENDPOINT_URL")
    for job in jobs:
        standin.add_job(job)
        standin.define_parameters(job, dict.fromkeys(PARAMETERS, ""))
        standin.script(
            job,
            lambda parameters, job=job: deploy_script(
                job, parameters, endpoint=endpoint, seconds=seconds
            ),
        )
