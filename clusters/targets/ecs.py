"""ECS through boto3, behind the target interface (clusters/targets/base.py).

A placement of kind `ecs` is one ECS service on a cluster; its revision is a task
definition ARN. start registers a revision that differs from the running one only in the
placement's container image and updates the service; restore updates it back; both adopt a
deployment that already runs the revision, so a tick that died after the update is never
followed by a second one.

What a watch costs (real ECS throttles each account's requests): one DescribeServices per
ten services of a cluster, and stopped tasks are listed once per cluster, and only when a
watched deployment reports failed tasks, is about to be called out (to be sure none of its
tasks died on the way), or falls short during the soak, or every FC_ECS_STOPPED_TASKS_EVERY
seconds otherwise. A stopped task never changes, so each is described once per process. One
boto3 client per region per process (clients are thread-safe).

Every call goes through `_aws`, the one place where botocore's errors become
TargetUnavailable (the endpoint is down, or throttling outlasted the retries) or
TargetRefused (access denied, no such cluster or service, a bad task definition), each with
a short message fit for a deploy's timeline. Throttling is retried inside botocore with its
adaptive mode; every call has connect and read timeouts, so no wait is unbounded.

AWS_ENDPOINT_URL (read by boto3 itself) points the clients at moto's server in the embedded
default and in tests that cross processes.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError
from django.conf import settings

from monitoring.metrics import counts_errors

from . import ecs_memory
from .base import (
    Ledger,
    Observation,
    Progress,
    TargetError,
    TargetRefused,
    TargetUnavailable,
    Watch,
)
from .registry import image_in_registry

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
    started_by: str
    task_definition: str
    stopped_reason: str
    stop_code: str
    exit_codes: tuple[int | None, ...]
    container_reasons: tuple[str, ...]
    group: str = ""  # service:<name> for a service's task
    container_instance: str = ""  # the container instance's ARN; "" on Fargate
    stopped_at: datetime | None = None

    @property
    def service(self) -> str:
        """The ECS service that ran it ('' for a task run by hand)."""
        return self.group.removeprefix("service:") if self.group.startswith("service:") else ""

    @property
    def oom_killed(self) -> bool:
        """Stopped by the kernel for memory: OutOfMemoryError, or exit code 137 (SIGKILL,
        which is what the OOM killer sends) without ECS having stopped it on purpose."""
        words = " ".join((self.stopped_reason, *self.container_reasons))
        return "OutOfMemory" in words or (
            137 in self.exit_codes and self.stop_code == "EssentialContainerExited"
        )

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


@counts_errors("fc_aws_errors_total", TargetError)
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
            raise TargetRefused(f"AWS denied {action}: {message}") from exc
        if code in MISSING:
            raise TargetRefused(f"could not {action}: {message or code}") from exc
        if code in THROTTLED or status >= 500:
            raise TargetUnavailable(f"AWS kept failing to {action} ({code}): {message}") from exc
        raise TargetRefused(f"could not {action} ({code}): {message}") from exc
    except (ConnectionError, ReadTimeoutError) as exc:
        raise TargetUnavailable(f"AWS did not answer while trying to {action}") from exc
    except BotoCoreError as exc:
        raise TargetUnavailable(f"could not {action}: {exc.__class__.__name__}") from exc


_clients: dict[tuple[str, ...], object] = {}
_clients_lock = threading.Lock()


def client(service: str, region: str):
    """One boto3 client per service and region in this process (boto3 clients are thread-safe).

    Keyed by the endpoint and the access key too, so that pointing the process at another
    endpoint (the tests' moto, the embedded default's) gets a client that talks to it.
    """
    key = (
        service,
        region,
        os.environ.get("AWS_ENDPOINT_URL", ""),
        os.environ.get("AWS_ACCESS_KEY_ID", ""),
    )
    with _clients_lock:
        if key not in _clients:
            _clients[key] = boto3.client(service, region_name=region, config=_config())
        return _clients[key]


def forget_clients() -> None:
    """Drop the cached clients and what was learned of stopped tasks (tests start afresh)."""
    with _clients_lock:
        _clients.clear()
    with _stopped_lock:
        _stopped_seen.clear()
        _last_scan.clear()


# Stopped tasks never change: each is described once. Keyed by (region, cluster); pruned to
# what ECS still lists, so it holds about an hour of a cluster's stopped tasks at most.
_stopped_seen: dict[tuple[str, str], dict[str, StoppedTask]] = {}
_stopped_lock = threading.Lock()
_last_scan: dict[tuple[str, str], float] = {}


class EcsTarget:
    """One region's ECS (and ECR), as a rollout target."""

    start_word = "deployment"
    instance_word = "task"

    def __init__(self, region: str):
        self.region = region

    @property
    def ecs(self):
        return client("ecs", self.region)

    # -------------------------------------------------------------- the interface

    def label(self, revision: str) -> str:
        return revision_name(revision)

    def name(self, placement) -> str:
        return f"{placement.ecs_service_name} on {placement.cluster.name}"

    def current(self, placement) -> str:
        return self.describe_service(
            placement.cluster.name, placement.ecs_service_name
        ).task_definition

    def start(self, placement, image: str, ledger: Ledger) -> str:
        cluster, service = placement.cluster.name, placement.ecs_service_name
        if not ledger.revision_before:
            # Written before anything changes: it is what a restore puts back.
            ledger.write(revision_before=self.current(placement))
        if not ledger.revision_made:
            made = self.register_revision(
                ledger.revision_before, container=placement.container_name, image=image
            )
            ledger.write(revision_made=made)
        handle = self._adopt_or_update(cluster, service, ledger.revision_made)
        ledger.write(start_handle=handle)
        return handle

    def restore(self, placement, revision: str, ledger: Ledger) -> str:
        # Adopted when the service already runs it: ECS rolled it back by itself, the forward
        # update never happened, or a tick that died had already sent this one.
        handle = self._adopt_or_update(placement.cluster.name, placement.ecs_service_name, revision)
        ledger.write(restore_handle=handle)
        return handle

    def observe(self, watches: Sequence[Watch]) -> list[Observation]:
        answers: dict[int, Observation] = {}
        by_cluster: dict[str, list[tuple[int, Watch]]] = {}
        for index, watch in enumerate(watches):
            by_cluster.setdefault(watch.placement.cluster.name, []).append((index, watch))
        for cluster, indexed in by_cluster.items():
            try:
                answers.update(self._observe_cluster(cluster, indexed))
            except TargetError as exc:
                answers.update(
                    (index, Observation(Progress.PROGRESSING, error=exc)) for index, _ in indexed
                )
        return [answers[index] for index in range(len(watches))]

    def image_exists(self, image: str) -> bool:
        return image_exists(image)

    def memory_problems(self, placement) -> list[str]:
        """The memory guard for the revision a start would make (ecs_memory.py)."""
        return ecs_memory.memory_problems(self, placement)

    # ---------------------------------------------------------------- watching

    def _observe_cluster(
        self, cluster: str, indexed: list[tuple[int, Watch]]
    ) -> dict[int, Observation]:
        names = list(dict.fromkeys(w.placement.ecs_service_name for _, w in indexed))
        states = self.describe_services(cluster, names)
        answers: dict[int, Observation] = {}
        judged: list[tuple[int, Watch, ServiceState, Deployment | None]] = []
        for index, watch in indexed:
            state = states.get(watch.placement.ecs_service_name)
            if state is None:
                answers[index] = Observation(
                    Progress.PROGRESSING,
                    error=TargetRefused(
                        f"there is no service {watch.placement.ecs_service_name} on cluster "
                        f"{cluster}"
                    ),
                )
                continue
            judged.append((index, watch, state, state.deployment(watch.handle)))
        stopped = self._stopped_if_due(cluster, judged)
        for index, watch, state, ours in judged:
            answers[index] = self._judge(watch, state, ours, stopped)
        return answers

    def _stopped_if_due(self, cluster, judged) -> list[StoppedTask] | None:
        key = (self.region, cluster)
        due = (
            time.monotonic() - _last_scan.get(key, -math.inf) >= settings.FC_ECS_STOPPED_TASKS_EVERY
        )
        for _, watch, state, ours in judged:
            if ours is None:
                continue
            if ours.failed_tasks or (watch.settled and ours.running < ours.desired):
                due = True
            if self._looks_out(watch, state, ours) and not watch.settled:
                due = True  # never called out without a look at what died on the way
        if not due:
            return None
        _last_scan[key] = time.monotonic()
        return self.cluster_stopped_tasks(cluster)

    @staticmethod
    def _looks_out(watch: Watch, state: ServiceState, ours: Deployment) -> bool:
        primary = state.primary
        return (
            ours.rollout_state == "COMPLETED"
            and ours.running >= ours.desired
            and primary is not None
            and primary.id == ours.id
            and primary.task_definition == watch.revision
        )

    def _judge(self, watch, state, ours, stopped) -> Observation:
        revision = revision_name(watch.revision)
        name = self.name(watch.placement)
        failed = [t for t in stopped or () if t.started_by == watch.handle and t.failed]
        counts = {"running": ours.running, "desired": ours.desired} if ours else {}
        if failed:
            reasons = Counter(t.reason for t in failed).most_common()
            words = ", ".join(reason if n == 1 else f"{reason} ({n})" for reason, n in reasons)
            return Observation(
                Progress.FAILED,
                reason=f"{len(failed)} task{'s' if len(failed) != 1 else ''} of {revision} "
                f"stopped: {words}",
                **counts,
            )
        primary = state.primary
        if ours is None or ours.rollout_state == "FAILED":
            why = f" ({ours.rollout_state_reason})" if ours and ours.rollout_state_reason else ""
            runs = revision_name(primary.task_definition) if primary else "nothing"
            return Observation(
                Progress.FAILED,
                reason=f"ECS gave up on deployment {watch.handle} of {revision} on {name}{why} "
                f"and rolled the service back by itself: it runs {runs}, not {revision}",
                **counts,
            )
        if primary is None or primary.id != watch.handle:
            runs = f"{primary.id} ({revision_name(primary.task_definition)})" if primary else "none"
            return Observation(
                Progress.FAILED,
                reason=f"another deployment took over {name}: its primary deployment is {runs}",
                **counts,
            )
        out = self._looks_out(watch, state, ours)
        return Observation(Progress.OUT if out else Progress.PROGRESSING, **counts)

    def scale_to_zero(self, placement) -> None:
        """Set the service's desired count to 0: ECS stops its tasks and starts none."""
        cluster, service = placement.cluster.name, placement.ecs_service_name
        with _aws(f"scale {service} on {cluster} to zero"):
            self.ecs.update_service(cluster=cluster, service=service, desiredCount=0)

    # ------------------------------------------------------------- ECS's calls

    def describe_service(self, cluster: str, service: str) -> ServiceState:
        found = self.describe_services(cluster, [service])
        if service not in found:
            raise TargetRefused(f"there is no service {service} on cluster {cluster}")
        return found[service]

    def describe_services(self, cluster: str, services: list[str]) -> dict[str, ServiceState]:
        """The services that exist, by name; DescribeServices takes ten a call."""
        found: dict[str, ServiceState] = {}
        for start in range(0, len(services), 10):
            batch = services[start : start + 10]
            what = batch[0] if len(batch) == 1 else f"{len(batch)} services"
            with _aws(f"read service {what} on {cluster}"):
                answer = self.ecs.describe_services(cluster=cluster, services=batch)
            for described in answer.get("services", []):
                if described.get("status") == "INACTIVE":
                    continue
                state = _service_state(described)
                # A placement may name its service by name or by ARN.
                found[described.get("serviceName", "")] = state
                found[described.get("serviceArn", "")] = state
        return found

    def register_revision(self, task_definition: str, *, container: str, image: str) -> str:
        """A new revision of the family that differs only in `container`'s image."""
        with _aws(f"read task definition {revision_name(task_definition)}"):
            answer = self.ecs.describe_task_definition(
                taskDefinition=task_definition, include=["TAGS"]
            )
        described = answer["taskDefinition"]
        names = [c.get("name") for c in described.get("containerDefinitions", [])]
        if container not in names:
            raise TargetRefused(
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

    def _adopt_or_update(self, cluster: str, service: str, task_definition: str) -> str:
        """Update the service, unless a tick that died already did: then take its deployment."""
        primary = self.describe_service(cluster, service).primary
        if primary and primary.task_definition == task_definition:
            return primary.id
        return self.update_service(cluster, service, task_definition)

    def cluster_stopped_tasks(self, cluster: str) -> list[StoppedTask]:
        """The cluster's stopped tasks (ECS keeps them for about an hour), each described once."""
        key = (self.region, cluster)
        with _aws(f"list the stopped tasks on {cluster}"):
            pages = self.ecs.get_paginator("list_tasks").paginate(
                cluster=cluster, desiredStatus="STOPPED"
            )
            arns = [arn for page in pages for arn in page.get("taskArns", [])]
        with _stopped_lock:
            known = dict(_stopped_seen.get(key, {}))
        new = [arn for arn in arns if arn not in known]
        for start in range(0, len(new), 100):
            with _aws(f"read the stopped tasks on {cluster}"):
                answer = self.ecs.describe_tasks(cluster=cluster, tasks=new[start : start + 100])
            for task in answer.get("tasks", []):
                known[task["taskArn"]] = _stopped_task(task)
        listed = {arn: known[arn] for arn in arns if arn in known}
        with _stopped_lock:  # a threaded worker's ticks may scan at once
            _stopped_seen[key] = listed
        return list(listed.values())


def _service_state(described: dict) -> ServiceState:
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


def _stopped_task(task: dict) -> StoppedTask:
    containers = task.get("containers", [])
    return StoppedTask(
        arn=task["taskArn"],
        started_by=task.get("startedBy", ""),
        task_definition=task.get("taskDefinitionArn", ""),
        stopped_reason=task.get("stoppedReason", ""),
        stop_code=task.get("stopCode", ""),
        exit_codes=tuple(c.get("exitCode") for c in containers),
        container_reasons=tuple(c.get("reason", "") for c in containers),
        group=task.get("group", ""),
        container_instance=task.get("containerInstanceArn", "") or "",
        stopped_at=task.get("stoppedAt"),
    )


def image_exists(image: str) -> bool:
    """Is `repository:tag` there to pull? ECR through boto3; other registries by their HTTP API
    (clusters/targets/registry.py)."""
    match = ECR_IMAGE.match(image)
    if match:
        if not match["tag"]:
            raise TargetRefused(f"the image {image} has no tag")
        ecr = client("ecr", match["region"])
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
    return image_in_registry(image)


@functools.cache
def _target(region: str) -> EcsTarget:
    return EcsTarget(region)


def target_for_region(region: str) -> EcsTarget:
    """The target of one region (the cluster checks look at a cluster, not a placement)."""
    return _target(region)


def target_for(placement) -> EcsTarget:
    """The target of an ECS placement: its cluster's region."""
    return _target(placement.cluster.region)
