"""ECS and ECR through boto3: what a rollout needs to read and change, and nothing more.

Every call goes through `_aws`, the one place where botocore's errors become EcsUnavailable
(passing trouble: the endpoint is down, or throttling outlasted the retries) or EcsRefused (a
person must act: access denied, no such cluster or service, a bad task definition), each with
a short message fit for a deploy's timeline. Throttling is retried inside botocore with its
adaptive mode (client-side rate limiting and jittered backoff); every call has connect and
read timeouts, so no wait is unbounded.

AWS_ENDPOINT_URL (read by boto3 itself) points the clients at moto's server in the embedded
default and in tests that cross processes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from django.conf import settings

from monitoring.metrics import counts_errors

# Keys of a described task definition that register_task_definition takes back.
REGISTERABLE_KEYS = (
    "family",
    "taskRoleArn",
    "executionRoleArn",
    "networkMode",
    "containerDefinitions",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "pidMode",
    "ipcMode",
    "proxyConfiguration",
    "inferenceAccelerators",
    "ephemeralStorage",
    "runtimePlatform",
)
ACCESS_DENIED = {"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"}
MISSING = {
    "ServiceNotFoundException",
    "ServiceNotActiveException",
    "ClusterNotFoundException",
    "RepositoryNotFoundException",
}
THROTTLED = {
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
}
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?$"
)


class EcsError(Exception):
    retryable = False


class EcsUnavailable(EcsError):
    """AWS did not answer, or kept throttling past the retries: try again later."""

    retryable = True


class EcsRefused(EcsError):
    """AWS refused: access denied, a missing service, a bad task definition."""


@dataclass(frozen=True)
class Deployment:
    id: str
    status: str  # PRIMARY, ACTIVE
    task_definition: str
    desired: int
    running: int
    pending: int
    failed_tasks: int
    rollout_state: str  # IN_PROGRESS, COMPLETED, FAILED
    rollout_state_reason: str


@dataclass(frozen=True)
class ServiceState:
    task_definition: str
    desired: int
    running: int
    deployments: list[Deployment] = field(default_factory=list)

    @property
    def primary(self) -> Deployment | None:
        return next((d for d in self.deployments if d.status == "PRIMARY"), None)

    def deployment(self, deployment_id: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)


@dataclass(frozen=True)
class StoppedTask:
    arn: str
    task_definition: str
    stopped_reason: str
    stop_code: str
    exit_codes: tuple[int | None, ...]
    container_reasons: tuple[str, ...]

    @property
    def failed(self) -> bool:
        """Stopped for a fault, not by the scheduler replacing it on purpose."""
        if any(code not in (None, 0) for code in self.exit_codes):
            return True
        words = " ".join((self.stopped_reason, *self.container_reasons))
        return (
            "OutOfMemory" in words
            or "Essential container in task exited" in words
            or (self.stop_code in {"TaskFailedToStart", "EssentialContainerExited"})
        )

    @property
    def reason(self) -> str:
        if "OutOfMemory" in " ".join((self.stopped_reason, *self.container_reasons)):
            return "OutOfMemoryError"
        codes = [code for code in self.exit_codes if code not in (None, 0)]
        if codes:
            return f"exit code {codes[0]}" + (
                f" ({self.stopped_reason})" if self.stopped_reason else ""
            )
        return self.stopped_reason or self.stop_code or "stopped"


def revision_name(task_definition_arn: str) -> str:
    """'arn:...:task-definition/web:42' -> 'web:42', for people."""
    return task_definition_arn.rsplit("/", 1)[-1]


def _config() -> Config:
    return Config(
        retries={"mode": "adaptive", "max_attempts": settings.FC_AWS_MAX_ATTEMPTS},
        connect_timeout=settings.FC_AWS_TIMEOUT,
        read_timeout=settings.FC_AWS_TIMEOUT,
    )


@counts_errors("fc_aws_errors_total", EcsError)
@contextlib.contextmanager
def _aws(action: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = (error.get("Message") or code)[:300]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ACCESS_DENIED:
            raise EcsRefused(f"AWS denied {action}: {message}") from exc
        if code in MISSING:
            raise EcsRefused(f"could not {action}: {message or code}") from exc
        if code in THROTTLED or status >= 500:
            raise EcsUnavailable(f"AWS kept failing to {action} ({code}): {message}") from exc
        raise EcsRefused(f"could not {action} ({code}): {message}") from exc
    except (ConnectionError, ReadTimeoutError) as exc:
        raise EcsUnavailable(f"AWS did not answer while trying to {action}") from exc
    except BotoCoreError as exc:
        raise EcsUnavailable(f"could not {action}: {exc.__class__.__name__}") from exc


class EcsTarget:
    """One region's ECS (and ECR) for a rollout."""

    def __init__(self, region: str):
        self.region = region
        self.ecs = boto3.client("ecs", region_name=region, config=_config())

    def describe_service(self, cluster: str, service: str) -> ServiceState:
        with _aws(f"read service {service} on {cluster}"):
            answer = self.ecs.describe_services(cluster=cluster, services=[service])
        found = [s for s in answer.get("services", []) if s.get("status") != "INACTIVE"]
        if not found:
            raise EcsRefused(f"there is no service {service} on cluster {cluster}")
        described = found[0]
        return ServiceState(
            task_definition=described.get("taskDefinition", ""),
            desired=described.get("desiredCount", 0),
            running=described.get("runningCount", 0),
            deployments=[
                Deployment(
                    id=d["id"],
                    status=d.get("status", ""),
                    task_definition=d.get("taskDefinition", ""),
                    desired=d.get("desiredCount", 0),
                    running=d.get("runningCount", 0),
                    pending=d.get("pendingCount", 0),
                    failed_tasks=d.get("failedTasks", 0),
                    rollout_state=d.get("rolloutState", ""),
                    rollout_state_reason=d.get("rolloutStateReason", ""),
                )
                for d in described.get("deployments", [])
            ],
        )

    def register_revision(self, task_definition: str, *, container: str, image: str) -> str:
        """A new revision of the family that differs only in `container`'s image."""
        with _aws(f"read task definition {revision_name(task_definition)}"):
            answer = self.ecs.describe_task_definition(
                taskDefinition=task_definition, include=["TAGS"]
            )
        described = answer["taskDefinition"]
        names = [c.get("name") for c in described.get("containerDefinitions", [])]
        if container not in names:
            raise EcsRefused(
                f"task definition {revision_name(task_definition)} has no container called "
                f"'{container}' (it has: {', '.join(names)})"
            )
        revision = {key: described[key] for key in REGISTERABLE_KEYS if described.get(key)}
        revision["containerDefinitions"] = [
            {**c, "image": image} if c.get("name") == container else c
            for c in described["containerDefinitions"]
        ]
        if answer.get("tags"):
            revision["tags"] = answer["tags"]
        with _aws(f"register a new revision of {described['family']}"):
            registered = self.ecs.register_task_definition(**revision)
        return registered["taskDefinition"]["taskDefinitionArn"]

    def update_service(self, cluster: str, service: str, task_definition: str) -> str:
        """Point the service at the revision; returns the id of the deployment ECS started."""
        with _aws(f"update service {service} on {cluster}"):
            answer = self.ecs.update_service(
                cluster=cluster, service=service, taskDefinition=task_definition
            )
        primary = next(
            (d for d in answer["service"].get("deployments", []) if d.get("status") == "PRIMARY"),
            None,
        )
        return primary["id"] if primary else ""

    def stopped_tasks(self, cluster: str, deployment_id: str) -> list[StoppedTask]:
        """Tasks a deployment started that have stopped (ECS keeps them for about an hour)."""
        with _aws(f"list the stopped tasks of {deployment_id}"):
            pages = self.ecs.get_paginator("list_tasks").paginate(
                cluster=cluster, startedBy=deployment_id, desiredStatus="STOPPED"
            )
            arns = [arn for page in pages for arn in page.get("taskArns", [])]
        stopped: list[StoppedTask] = []
        for start in range(0, len(arns), 100):
            with _aws(f"read the stopped tasks of {deployment_id}"):
                answer = self.ecs.describe_tasks(cluster=cluster, tasks=arns[start : start + 100])
            for task in answer.get("tasks", []):
                containers = task.get("containers", [])
                stopped.append(
                    StoppedTask(
                        arn=task["taskArn"],
                        task_definition=task.get("taskDefinitionArn", ""),
                        stopped_reason=task.get("stoppedReason", ""),
                        stop_code=task.get("stopCode", ""),
                        exit_codes=tuple(c.get("exitCode") for c in containers),
                        container_reasons=tuple(c.get("reason", "") for c in containers),
                    )
                )
        return stopped


def image_exists(image: str) -> bool:
    """Is `repository:tag` there to pull? ECR through boto3; other registries by their API."""
    match = ECR_IMAGE.match(image)
    if match:
        if not match["tag"]:
            raise EcsRefused(f"the image {image} has no tag")
        ecr = boto3.client("ecr", region_name=match["region"], config=_config())
        with _aws(f"look up the image {image}"):
            try:
                ecr.describe_images(
                    registryId=match["account"],
                    repositoryName=match["repository"],
                    imageIds=[{"imageTag": match["tag"]}],
                )
            except (
                ecr.exceptions.ImageNotFoundException,
                ecr.exceptions.RepositoryNotFoundException,
            ):
                return False
        return True
    return _registry_has(image)


def _registry_has(image: str) -> bool:
    # The Docker registry HTTP API v2: HEAD the manifest. Anonymous: a registry that needs
    # credentials answers 401, which is said, not guessed at.
    host, _, rest = image.partition("/")
    if "." not in host and ":" not in host:
        host, rest = "registry-1.docker.io", image if "/" in image else f"library/{image}"
    repository, _, tag = rest.rpartition(":")
    if not repository or "/" in tag:
        raise EcsRefused(f"the image {image} has no tag")
    # Like Docker, a registry on this machine is spoken to over plain HTTP.
    scheme = "http" if host.split(":")[0] in ("localhost", "127.0.0.1") else "https"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{tag}"
    try:
        answer = requests.head(
            url,
            timeout=settings.FC_AWS_TIMEOUT,
            headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        )
    except requests.RequestException as exc:
        raise EcsUnavailable(f"the registry {host} did not answer") from exc
    if answer.status_code == 404:
        return False
    if answer.status_code in (401, 403):
        raise EcsRefused(f"the registry {host} wants credentials to look up {image}")
    if answer.status_code >= 500:
        raise EcsUnavailable(f"the registry {host} answered {answer.status_code}")
    return answer.ok
