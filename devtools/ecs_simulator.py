"""An ECS deployment simulator on top of moto, for tests and the embedded default's demo.

moto's ECS stores services and tasks but does not deploy: ``update_service`` swaps the task
definition without a new deployment, services start no tasks, nothing ever fails, and
``describe_tasks`` quietly walks each task towards STOPPED. Fat Controller's rollout code
is written against real ECS, so this module patches moto's ECS backend, in this process,
to behave like the ECS rolling-update scheduler.

What it simulates:

* Deployments, as DescribeServices shows them. ``create_service`` makes one PRIMARY
  deployment (``ecs-svc/<digits>``) IN_PROGRESS; ``update_service`` with another task
  definition (or ``forceNewDeployment``) makes a new PRIMARY and turns the old one ACTIVE.
  Tasks of the PRIMARY start one per ``task_start_seconds``; each one that starts healthy
  lets the scheduler stop one task of the ACTIVE deployments ("Scaling activity initiated
  by (deployment ...)"). When the PRIMARY runs ``desiredCount`` healthy tasks and the old
  ones are gone, its rolloutState becomes COMPLETED and the ACTIVE deployments disappear.
  ``update_service`` with only ``desiredCount`` scales the PRIMARY deployment.
* Tasks, as real moto ``Task`` objects in ``backend.tasks[cluster][task_arn]``, with
  ``startedBy`` = the deployment id, ``group`` = ``service:<name>``, lastStatus
  PENDING/RUNNING/STOPPED, desiredStatus, stopCode, stoppedReason, createdAt, startedAt,
  stoppingAt, stoppedAt and ``containers[0]`` exitCode/reason, all visible through
  ``list_tasks`` and ``describe_tasks``. Their moto state machine (``ecs::task``, by default
  one step per ``describe_tasks``) is pinned per task, so they never drift on their own.
* Failures: tasks that start and then stop after ``task_fail_after_seconds`` ("oom":
  stopCode EssentialContainerExited, stoppedReason and container reason "OutOfMemoryError:
  ...", exit code 137; "exit": "Essential container in task exited", exit code 1), are
  replaced and fail again; ``failedTasks`` counts them; without a circuit breaker the
  deployment stays IN_PROGRESS for ever while the old tasks keep serving. Deployments that
  never get a task running ("stall": PENDING for ever). The deployment circuit breaker,
  from the service's ``deploymentConfiguration`` or forced ("circuit-breaker"): after
  ``circuit_breaker_threshold`` failed tasks the deployment is FAILED ("ECS deployment
  circuit breaker: tasks failed to start.") and, with rollback, ECS rolls the service back
  to the task definition of its last COMPLETED deployment in a new PRIMARY deployment that
  completes; the FAILED one goes away with the other ACTIVE ones. A rollback that fails
  too is not rolled back again.
* Service ``events`` in ECS's words (newest first), runningCount/pendingCount,
  ``deploymentConfiguration`` (kept from ``create_service``, which moto drops, with ECS's
  defaults), cluster task counts. ``list_tasks`` honours ``serviceName`` and, as ECS does,
  lists only desiredStatus RUNNING tasks unless asked for STOPPED ones. ``stop_task`` on a
  service task stops it (stopCode UserInitiated) and the service replaces it. STOPPED
  tasks are forgotten after an hour of simulated time.

Behaviours: ``fail_new_tasks``, ``stall`` and ``circuit_breaker_rollback`` attach to the
service's IN_PROGRESS PRIMARY deployment if it has one, else to the next deployment the
service gets (``create_service`` counts), once: the deployment after it behaves normally,
and so does a rollback. ``behave_by_image`` applies to every deployment whose task
definition has an image containing the marker, for as long as it is set; a deployment's
own behaviour wins. ``clear`` forgets both (stalled tasks then start; tasks already doomed
still fail).

Behaviour from the image itself, opt-in: after ``behave_by_image_annotation(key)``, a
deployment whose task definition runs an ECR image
(``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` or ``@<digest>``) behaves as
the annotation ``key`` of that image's manifest says (``"annotations": {key: "oom"}``; one of
``BEHAVIOURS``: ok, oom, exit, stall, circuit-breaker; or one of ``OTHER_SIDES_BEHAVIOURS``,
which runs normally here). The manifest is read from
moto's ECR backend in this process (``moto.ecr.models.ecr_backends[account][region]``), so
whoever pushes the image decides how its tasks fare: the embedded default's demo builds
push their image with PutImage, and a branch whose image should crash says so in the
manifest. Images that are not in ECR, not annotated, or annotated with an unknown behaviour
(logged once) behave normally. It comes after ``fail_new_tasks``/``stall``/... and
``behave_by_image``; ``clear`` leaves it on; ``behave_by_image_annotation(None)`` turns it off.

Placement, simply: where the cluster has ACTIVE container instances whose agent is connected
(``add_container_instance``), each new task of a service runs on the next of them in turn
(its ``containerInstanceArn``), so a task that dies is replaced on another host; with none,
tasks run nowhere in particular. ``leak``: tasks start healthy, so the deployment
completes, then each is OOM-killed after ``leak_after_seconds`` and replaced on the next
host, where it leaks again (the rogue process that walks a cluster).

What it does not simulate: capacity (placement never refuses a task, and placed tasks take
no memory from an instance), Fargate provisioning, awsvpc networking beyond what moto's Task
does, load balancers and health checks (a task is healthy as soon as it is RUNNING, unless it is
doomed to fail), maximumPercent/minimumHealthyPercent (all new tasks are launched at once
and an old task stops only when a new one is healthy), the percentage-based circuit
breaker threshold, task sets, CODE_DEPLOY/EXTERNAL controllers (left to moto), daemon
services, other containers than the first one of a task definition. ``update_service``
with the service's current task definition and no ``forceNewDeployment`` starts no
deployment, as in ECS. Services made before ``install`` are adopted on the next
``advance``: their deployment starts tasks. Timestamps follow the simulated clock (the
wall clock at construction plus the simulated seconds), so ``advance`` moves them ahead of
real time.

How it hooks in: ``install`` replaces, on the classes, ``EC2ContainerServiceBackend``'s
``create_service``, ``update_service``, ``delete_service``, ``stop_task`` and
``list_tasks`` (simulation) and ``describe_services``, ``describe_tasks``,
``list_services``, ``run_task`` (the lock only), and ``EC2ContainerServiceResponse``'s
``call_action`` (every ECS request, parsing to serialising, runs under the simulator's
lock, which the clock thread takes too) and ``create_service`` (to keep
``deploymentConfiguration``). The simulation state hangs off moto's Service objects, so it
goes when moto resets. ``uninstall`` puts the originals back.

Use it with ``moto.mock_aws`` or with a ``moto.server.ThreadedMotoServer`` in the same
process (both reach ``moto.ecs.models.ecs_backends``)::

    with mock_aws(), EcsSimulator(task_start_seconds=1) as sim:
        ecs = boto3.client("ecs", region_name="eu-west-1")
        ...  # create_service / update_service as usual
        sim.fail_new_tasks("cluster", "web")
        sim.advance(10)  # simulated seconds: tasks start, fail, deployments complete

or, for a server other processes talk to, ``sim.install(); sim.start_clock()`` and time
passes by itself. Only one simulator can be installed at a time. Production code must not
import this module.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from moto.core.utils import utcnow
from moto.ecs import models as ecs_models
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_api._internal import mock_random

logger = logging.getLogger(__name__)

BEHAVIOURS = ("ok", "oom", "exit", "stall", "circuit-breaker", "leak")
# Behaviours an image's annotation may name for another side of the demo: ECS runs the image
# as it runs any ("legacy-fails": the demo's legacy deploy job fails, devtools/legacy_jobs.py).
OTHER_SIDES_BEHAVIOURS = ("legacy-fails",)

OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"
EXIT_REASON = "Essential container in task exited"
CIRCUIT_BREAKER_REASON = "ECS deployment circuit breaker: tasks failed to start."
UNABLE_TO_START = (
    "is unable to consistently start tasks successfully. For more information, see the "
    "Troubleshooting section of the Amazon ECS Developer Guide."
)
STOPPED_TASK_RETENTION_SECONDS = 3600.0
MAX_EVENTS = 100
# An image in ECR, as a task definition names it: by tag or by digest.
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>.+))?$"
)

DEFAULT_DEPLOYMENT_CONFIGURATION: dict[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}

_STATE_ATTR = "_fc_ecs_simulator_state"
_Backend = ecs_models.EC2ContainerServiceBackend
_MISSING = object()
_install_lock = threading.Lock()
_installed: EcsSimulator | None = None


@dataclass(frozen=True)
class _Behaviour:
    kind: str  # "ok" | "fail" | "stall"
    reason: str = ""  # the task's stoppedReason
    container_reason: str | None = None
    exit_code: int | None = None
    force_rollback: bool = False  # the circuit breaker with rollback, whatever the service says


_OK = _Behaviour("ok")


def _behaviour(name: str) -> _Behaviour:
    if name == "ok" or name in OTHER_SIDES_BEHAVIOURS:
        return _OK
    if name == "oom":
        return _Behaviour("fail", OOM_REASON, OOM_REASON, 137)
    if name == "exit":
        return _Behaviour("fail", EXIT_REASON, None, 1)
    if name == "stall":
        return _Behaviour("stall")
    if name == "circuit-breaker":
        return _Behaviour("fail", EXIT_REASON, None, 1, force_rollback=True)
    if name == "leak":
        return _Behaviour("leak", OOM_REASON, OOM_REASON, 137)
    raise ValueError(f"unknown behaviour {name!r}: one of {', '.join(BEHAVIOURS)}")


@dataclass(eq=False)
class _SimTask:
    task: ecs_models.Task
    start_at: float | None  # when it turns RUNNING; None: not scheduled (stalled)
    state: str = "PENDING"  # PENDING | RUNNING | STOPPED
    fail_at: float | None = None  # doomed: when it stops with `failure`
    failure: _Behaviour | None = None
    leaks: bool = False  # healthy until fail_at: its memory grows until the kernel kills it


@dataclass(eq=False)
class _Deployment:
    id: str
    task_definition: ecs_models.TaskDefinition | None
    desired_count: int
    created_at: float
    behaviour: _Behaviour | None = None  # bound by fail_new_tasks / stall / ...
    is_rollback: bool = False
    status: str = "PRIMARY"
    rollout_state: str = "IN_PROGRESS"
    rollout_state_reason: str = ""
    failed_tasks: int = 0
    updated_at: float = 0.0
    last_start_slot: float = float("-inf")
    reported_unable: bool = False
    tasks: list[_SimTask] = field(default_factory=list)  # not yet STOPPED

    def __post_init__(self) -> None:
        self.updated_at = self.created_at
        self.rollout_state_reason = f"ECS deployment {self.id} in progress."

    @property
    def task_definition_arn(self) -> str | None:
        return self.task_definition.arn if self.task_definition else None

    @property
    def images(self) -> list[str]:
        if self.task_definition is None:
            return []
        return [c.get("image") or "" for c in self.task_definition.container_definitions]

    @property
    def pending(self) -> list[_SimTask]:
        return [t for t in self.tasks if t.state == "PENDING"]

    @property
    def running(self) -> list[_SimTask]:
        return [t for t in self.tasks if t.state == "RUNNING"]

    @property
    def healthy(self) -> list[_SimTask]:
        return [t for t in self.tasks if t.state == "RUNNING" and (t.fail_at is None or t.leaks)]


@dataclass(eq=False)
class _ServiceState:
    owner: EcsSimulator
    deployments: list[_Deployment]  # PRIMARY first
    last_completed: _Deployment | None = None

    @property
    def primary(self) -> _Deployment:
        return self.deployments[0]


def _new_deployment_id() -> str:
    return f"ecs-svc/{mock_random.randint(10**18, 10**19 - 1)}"


def _name(name_or_arn: str) -> str:
    return name_or_arn.split("/")[-1]


class EcsSimulator:
    """Makes moto's ECS deploy like ECS. See the module docstring."""

    def __init__(
        self,
        *,
        task_start_seconds: float = 1.0,
        task_fail_after_seconds: float = 1.0,
        circuit_breaker_threshold: int = 3,
        leak_after_seconds: float = 30.0,
    ) -> None:
        if task_start_seconds < 0:
            raise ValueError("task_start_seconds must not be negative")
        if task_fail_after_seconds <= 0:
            raise ValueError("task_fail_after_seconds must be positive")
        if circuit_breaker_threshold < 1:
            raise ValueError("circuit_breaker_threshold must be at least 1")
        if leak_after_seconds <= 0:
            raise ValueError("leak_after_seconds must be positive")
        self.leak_after_seconds = float(leak_after_seconds)
        self._images: dict[str, str] = {}  # region -> an image to start instances from
        self._placed: dict[str, int] = {}  # service ARN -> tasks placed so far (round-robin)
        self.task_start_seconds = float(task_start_seconds)
        self.task_fail_after_seconds = float(task_fail_after_seconds)
        self.circuit_breaker_threshold = circuit_breaker_threshold
        self._lock = threading.RLock()
        self._epoch = utcnow()
        self._now = 0.0  # simulated seconds since _epoch
        self._pending: dict[tuple[str, str], _Behaviour] = {}
        self._by_image: dict[str, _Behaviour] = {}
        self._annotation_key: str | None = None  # behave_by_image_annotation
        self._annotation_warned: set[tuple[str, str]] = set()
        self._originals: dict[tuple[type, str], Any] = {}
        self._clock_thread: threading.Thread | None = None
        self._clock_stop = threading.Event()

    # -- installing -------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return bool(self._originals)

    @property
    def now(self) -> float:
        """Simulated seconds since the simulator was made."""
        return self._now

    def install(self) -> None:
        """Patch moto's ECS backend (and response) classes. Idempotent."""
        global _installed
        with _install_lock:
            if _installed is self:
                return
            if _installed is not None:
                raise RuntimeError("another EcsSimulator is installed; uninstall it first")
            targets = [
                (_Backend, "create_service"),
                (_Backend, "update_service"),
                (_Backend, "delete_service"),
                (_Backend, "stop_task"),
                (_Backend, "list_tasks"),
                (_Backend, "describe_services"),
                (_Backend, "describe_tasks"),
                (_Backend, "list_services"),
                (_Backend, "run_task"),
                (EC2ContainerServiceResponse, "call_action"),
                (EC2ContainerServiceResponse, "create_service"),
            ]
            for cls, name in targets:
                self._originals[(cls, name)] = cls.__dict__.get(name, _MISSING)
            replacements = {
                "create_service": self._patched_create_service,
                "update_service": self._patched_update_service,
                "delete_service": self._patched_delete_service,
                "stop_task": self._patched_stop_task,
                "list_tasks": self._patched_list_tasks,
            }
            for cls, name in targets:
                if cls is EC2ContainerServiceResponse:
                    replacement = (
                        self._patched_create_response
                        if name == "create_service"
                        # Parsing, the backend call and serialising all happen under the
                        # lock, so no response shows a deployment halfway through a tick.
                        else self._locked(self._original(cls, name))
                    )
                else:
                    replacement = replacements.get(name) or self._locked(self._original(cls, name))
                setattr(cls, name, replacement)
            _installed = self

    def uninstall(self) -> None:
        """Stop the clock and restore moto's classes. Idempotent."""
        global _installed
        self.stop_clock()
        with _install_lock:
            for (cls, name), original in self._originals.items():
                if original is _MISSING:
                    if name in cls.__dict__:
                        delattr(cls, name)
                else:
                    setattr(cls, name, original)
            self._originals.clear()
            if _installed is self:
                _installed = None

    def __enter__(self) -> EcsSimulator:
        self.install()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def _original(self, cls: type, name: str) -> Any:
        original = self._originals[(cls, name)]
        if original is _MISSING:  # inherited: look it up past cls
            return getattr(super(cls, cls), name)  # type: ignore[arg-type]
        return original

    # -- time -------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move the simulated clock and progress every deployment in every backend."""
        if seconds < 0:
            raise ValueError("the clock does not go backwards")
        with self._lock:
            target = self._now + seconds
            for backend in self._backends():
                for service in list(backend.services.values()):
                    state = self._state(backend, service)
                    if state is not None:
                        self._run_until(backend, service, state, target)
                self._forget_old_tasks(backend, target)
            self._now = target

    def start_clock(self, interval: float = 0.2) -> None:
        """Advance the simulated clock with real time, on a background thread."""
        if interval <= 0:
            raise ValueError("interval must be positive")
        if self._clock_thread is not None:
            return
        self._clock_stop.clear()
        thread = threading.Thread(
            target=self._tick, args=(interval,), name="ecs-simulator-clock", daemon=True
        )
        self._clock_thread = thread
        thread.start()

    def stop_clock(self) -> None:
        thread = self._clock_thread
        if thread is None:
            return
        self._clock_stop.set()
        if thread is not threading.current_thread():
            thread.join()
        self._clock_thread = None

    def _tick(self, interval: float) -> None:
        last = time.monotonic()
        while not self._clock_stop.wait(interval):
            current = time.monotonic()
            try:
                self.advance(current - last)
            except Exception:  # keep the clock going; the next tick may do better
                logger.exception("the ECS simulator's clock failed to advance")
            last = current

    def _at(self, t: float) -> datetime:
        return self._epoch + timedelta(seconds=t)

    # -- behaviours -------------------------------------------------------------------

    def fail_new_tasks(
        self,
        cluster: str,
        service: str,
        *,
        reason: str = OOM_REASON,
        exit_code: int = 137,
    ) -> None:
        """The service's in-progress (else next) deployment: its tasks start, then stop."""
        self._bind(cluster, service, _Behaviour("fail", reason, reason, exit_code))

    def fail_running_task(
        self, task: str, *, reason: str = OOM_REASON, exit_code: int = 137
    ) -> None:
        """A task that runs now dies (an OOM by default), as one does in the middle of a soak.

        The service starts a replacement, as ECS does; the stopped task stays visible to
        list_tasks(desiredStatus="STOPPED", startedBy=its deployment).
        """
        with self._lock:
            for backend in self._backends():
                found = self._find_task(backend, task)
                if found is None:
                    continue
                service, state, deployment, sim_task = found
                sim_task.failure = _Behaviour("fail", reason, reason, exit_code)
                self._fail(service, state, deployment, sim_task, self._now)
                self._settle(backend, service, state, self._now)
                return
        raise ValueError(f"no task {task} runs under the simulator")

    def stall(self, cluster: str, service: str) -> None:
        """The service's in-progress (else next) deployment never gets a task running."""
        self._bind(cluster, service, _behaviour("stall"))

    def circuit_breaker_rollback(self, cluster: str, service: str) -> None:
        """The in-progress (else next) deployment fails and ECS rolls the service back."""
        self._bind(cluster, service, _behaviour("circuit-breaker"))

    def behave_by_image(self, marker: str, behaviour: str) -> None:
        """Deployments of task definitions with an image containing `marker` behave so."""
        if not marker:
            raise ValueError("marker must not be empty")
        resolved = _behaviour(behaviour)
        with self._lock:
            self._by_image[marker] = resolved

    def behave_by_image_annotation(self, key: str | None) -> None:
        """Deployments of an ECR image behave as its manifest's annotation `key` says.

        The manifest is looked up in moto's ECR backend in this process whenever the
        simulator asks how a deployment behaves. None turns it off; ``clear`` leaves it on.
        """
        if key is not None and not key:
            raise ValueError("key must not be empty (None turns it off)")
        with self._lock:
            self._annotation_key = key

    # -- container instances -----------------------------------------------------------
    #
    # moto registers every container instance with 7482 MiB and an agent that is always
    # connected. These set what the cluster health checks must see: an instance of a chosen
    # type and registered memory, and an agent that disconnects and reconnects.

    def add_container_instance(
        self,
        cluster: str,
        *,
        region: str = "us-east-1",
        instance_type: str = "m5.large",
        registered_memory: int = 7482,
        endpoint_url: str | None = None,
    ) -> str:
        """Start an EC2 instance of `instance_type` and register it with `cluster`, its
        registered (and, with nothing placed, remaining) memory `registered_memory` MiB;
        returns the container instance's ARN. `endpoint_url`: the moto server to ask, where
        AWS_ENDPOINT_URL does not say (moto takes any credentials)."""
        import boto3

        where = (
            {
                "endpoint_url": endpoint_url,
                "aws_access_key_id": "sim",
                "aws_secret_access_key": "sim",
            }
            if endpoint_url
            else {}
        )
        ec2 = boto3.client("ec2", region_name=region, **where)
        image = self._images.get(region)
        if image is None:  # moto's list of Amazon's images is long: read it once per region
            image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
            self._images[region] = image
        host = ec2.run_instances(ImageId=image, InstanceType=instance_type, MinCount=1, MaxCount=1)[
            "Instances"
        ][0]
        ecs = boto3.client("ecs", region_name=region, **where)
        document = json.dumps({"instanceId": host["InstanceId"], "instanceType": instance_type})
        arn = ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=document)[
            "containerInstance"
        ]["containerInstanceArn"]
        with self._lock:
            instance = self._container_instance(cluster, arn)
            for resources in (instance.registered_resources, instance.remaining_resources):
                for resource in resources:
                    if resource["name"] == "MEMORY":
                        resource["integerValue"] = registered_memory
        return arn

    def set_agent_connected(self, cluster: str, instance_arn: str, connected: bool) -> None:
        """The instance's ECS agent disconnects (False) or comes back (True)."""
        with self._lock:
            self._container_instance(cluster, instance_arn).agent_connected = connected

    def _container_instance(self, cluster: str, instance_arn: str) -> Any:
        instance_id = instance_arn.rsplit("/", 1)[-1]
        for backend in self._backends():
            found = backend.container_instances.get(cluster, {}).get(instance_id)
            if found is not None:
                return found
        raise KeyError(f"no container instance {instance_arn} in cluster {cluster}")

    def clear(self) -> None:
        """Forget every behaviour, including those bound to existing deployments."""
        with self._lock:
            self._pending.clear()
            self._by_image.clear()
            for backend in self._backends():
                for service in list(backend.services.values()):
                    state = self._state(backend, service)
                    if state is not None:
                        for deployment in state.deployments:
                            deployment.behaviour = None
                        self._settle(backend, service, state, self._now)

    def _bind(self, cluster: str, service: str, behaviour: _Behaviour) -> None:
        key = (_name(cluster), _name(service))
        with self._lock:
            bound = False
            for backend in self._backends():
                for svc in list(backend.services.values()):
                    if (svc.cluster_name, svc.name) != key or svc.status != "ACTIVE":
                        continue
                    state = self._state(backend, svc)
                    if state is None:
                        continue
                    primary = state.primary
                    if primary.rollout_state == "IN_PROGRESS" and not primary.is_rollback:
                        primary.behaviour = behaviour
                        bound = True
                        self._settle(backend, svc, state, self._now)
            if bound:
                self._pending.pop(key, None)
            else:
                self._pending[key] = behaviour

    def _behaviour_of(self, deployment: _Deployment) -> _Behaviour:
        if deployment.behaviour is not None:
            return deployment.behaviour
        for marker, behaviour in self._by_image.items():
            if any(marker in image for image in deployment.images):
                return behaviour
        if self._annotation_key:
            for image in deployment.images:
                annotated = self._behaviour_from_manifest(image, self._annotation_key)
                if annotated is not None:
                    return annotated
        return _OK

    def _behaviour_from_manifest(self, image: str, key: str) -> _Behaviour | None:
        """The behaviour the ECR image's manifest names in annotation `key`, if any."""
        match = ECR_IMAGE.match(image)
        if match is None or not (match["tag"] or match["digest"]):
            return None
        from moto.ecr.models import ecr_backends  # only when asked: ECS tests need no ECR

        try:
            repository = ecr_backends[match["account"]][match["region"]].repositories.get(
                match["repository"]
            )
        except (KeyError, ValueError):
            return None
        if repository is None:
            return None
        for candidate in list(repository.images):
            if match["digest"]:
                found = candidate.image_digest == match["digest"]
            else:
                found = match["tag"] in candidate.image_tags
            if found:
                break
        else:
            return None
        try:
            annotations = json.loads(candidate.image_manifest).get("annotations") or {}
        except (TypeError, ValueError, AttributeError):
            return None
        value = annotations.get(key) if isinstance(annotations, dict) else None
        if not isinstance(value, str) or not value:
            return None
        try:
            return _behaviour(value)
        except ValueError:
            if (image, value) not in self._annotation_warned:
                self._annotation_warned.add((image, value))
                logger.warning(
                    "image %s: annotation %s=%r is not one of %s; it behaves normally",
                    image,
                    key,
                    value,
                    ", ".join(BEHAVIOURS),
                )
            return None

    # -- patched moto methods -----------------------------------------------------------

    def _locked(self, method: Any) -> Any:
        lock = self._lock

        def locked(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        locked.__name__ = getattr(method, "__name__", "locked")
        locked.__doc__ = getattr(method, "__doc__", None)
        return locked

    @property
    def _patched_create_response(self) -> Any:
        original = self._original(EC2ContainerServiceResponse, "create_service")
        sim = self

        def create_service(response: Any) -> Any:
            with sim._lock:
                result = original(response)
                service = getattr(result, "result", {}).get("service")
                configuration = response._get_param("deploymentConfiguration")
                if isinstance(service, ecs_models.Service) and configuration:
                    service.deployment_configuration = _deployment_configuration(configuration)
                return result

        return create_service

    @property
    def _patched_create_service(self) -> Any:
        original = self._original(_Backend, "create_service")
        sim = self

        def create_service(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with sim._lock:
                service = original(backend, *args, **kwargs)
                state = sim._state(backend, service)
                if state is not None:
                    behaviour = sim._pending.pop((service.cluster_name, service.name), None)
                    state.primary.behaviour = behaviour
                    sim._settle(backend, service, state, sim._now)
                return service

        return create_service

    @property
    def _patched_update_service(self) -> Any:
        original = self._original(_Backend, "update_service")
        sim = self

        def update_service(backend: Any, service_properties: dict[str, Any]) -> Any:
            with sim._lock:
                properties = dict(service_properties)
                force = bool(properties.pop("force_new_deployment", False))
                task_definition_str = properties.get("task_definition")
                task_definition = (
                    backend.describe_task_definition(task_definition_str)
                    if task_definition_str
                    else None
                )
                service = original(backend, properties)
                if task_definition is not None:
                    service.task_definition = task_definition.arn  # ECS keeps the ARN
                configuration = getattr(service, "deployment_configuration", None)
                service.deployment_configuration = _deployment_configuration(configuration)
                state = sim._state(backend, service)
                if state is None:
                    return service
                current = state.primary.task_definition_arn
                if force or (task_definition is not None and task_definition.arn != current):
                    behaviour = sim._pending.pop((service.cluster_name, service.name), None)
                    sim._start_deployment(
                        service,
                        state,
                        task_definition or state.primary.task_definition,
                        sim._now,
                        behaviour=behaviour,
                    )
                sim._settle(backend, service, state, sim._now)
                return service

        return update_service

    @property
    def _patched_delete_service(self) -> Any:
        original = self._original(_Backend, "delete_service")
        sim = self

        def delete_service(backend: Any, *args: Any, **kwargs: Any) -> Any:
            with sim._lock:
                service = original(backend, *args, **kwargs)
                state = sim._state(backend, service)
                if state is not None:
                    sim._settle(backend, service, state, sim._now)
                return service

        return delete_service

    @property
    def _patched_stop_task(self) -> Any:
        original = self._original(_Backend, "stop_task")
        sim = self

        def stop_task(backend: Any, cluster_str: str, task_str: str, reason: str) -> Any:
            with sim._lock:
                backend._get_cluster(cluster_str)
                found = sim._find_task(backend, task_str)
                if found is None:
                    return original(backend, cluster_str, task_str, reason)
                service, state, deployment, sim_task = found
                sim._stop(
                    deployment,
                    sim_task,
                    sim._now,
                    stop_code="UserInitiated",
                    reason=reason or "Task stopped by user",
                    exit_code=0,
                )
                sim._settle(backend, service, state, sim._now)
                return sim_task.task

        return stop_task

    @property
    def _patched_list_tasks(self) -> Any:
        original = self._original(_Backend, "list_tasks")
        sim = self

        def list_tasks(
            backend: Any,
            cluster_str: str | None = None,
            container_instance: str | None = None,
            family: str | None = None,
            started_by: str | None = None,
            service_name: str | None = None,
            desiredStatus: str | None = None,  # noqa: N803 - moto's name
        ) -> Any:
            with sim._lock:
                tasks = original(
                    backend,
                    cluster_str,
                    container_instance,
                    family,
                    started_by,
                    service_name,
                    desiredStatus or "RUNNING",  # ECS's default filter
                )
                if service_name:
                    group = f"service:{_name(service_name)}"
                    tasks = [t for t in tasks if t.group == group]
                return tasks

        return list_tasks

    # -- the scheduler ----------------------------------------------------------------

    def _backends(self) -> list[Any]:
        backends = []
        for _account_id, regions in list(ecs_models.ecs_backends.items()):
            backends.extend(backend for _region, backend in list(regions.items()))
        return backends

    def _state(self, backend: Any, service: Any) -> _ServiceState | None:
        """The service's simulation state, adopting a service made without it."""
        state = getattr(service, _STATE_ATTR, None)
        if state is not None and state.owner is self:
            return state
        if (service.deployment_controller or {}).get("type", "ECS") != "ECS":
            return None
        first = service.deployments[0] if service.deployments else {}
        task_definition = None
        if service.task_definition:
            try:
                task_definition = backend.describe_task_definition(service.task_definition)
            except ecs_models.TaskDefinitionNotFoundException:
                task_definition = None
        if not hasattr(service, "created_at"):
            service.created_at = self._at(self._now)
        service.deployment_configuration = _deployment_configuration(
            getattr(service, "deployment_configuration", None)
        )
        deployment = _Deployment(
            id=first.get("id") or _new_deployment_id(),
            task_definition=task_definition,
            desired_count=service.desired_count,
            created_at=self._now,
        )
        state = _ServiceState(owner=self, deployments=[deployment])
        setattr(service, _STATE_ATTR, state)
        return state

    def _find_task(self, backend: Any, task_str: str) -> Any:
        task_id = _name(task_str)
        for service in list(backend.services.values()):
            state = getattr(service, _STATE_ATTR, None)
            if state is None or state.owner is not self:
                continue
            for deployment in state.deployments:
                for sim_task in deployment.tasks:
                    if sim_task.task.id == task_id:
                        return service, state, deployment, sim_task
        return None

    def _start_deployment(
        self,
        service: Any,
        state: _ServiceState,
        task_definition: ecs_models.TaskDefinition | None,
        t: float,
        *,
        behaviour: _Behaviour | None = None,
        is_rollback: bool = False,
    ) -> _Deployment:
        for old in state.deployments:
            old.status = "ACTIVE"
            old.updated_at = t
        deployment = _Deployment(
            id=_new_deployment_id(),
            task_definition=task_definition,
            desired_count=service.desired_count,
            created_at=t,
            behaviour=behaviour,
            is_rollback=is_rollback,
        )
        state.deployments.insert(0, deployment)
        if task_definition is not None:
            service.task_definition = task_definition.arn
        return deployment

    def _run_until(self, backend: Any, service: Any, state: _ServiceState, target: float) -> None:
        self._reconcile(backend, service, state, self._now)
        for _ in range(1_000_000):
            t = _next_event(state)
            if t is None or t > target:
                break
            for deployment in list(state.deployments):
                for sim_task in list(deployment.tasks):
                    if sim_task.state == "RUNNING" and sim_task.fail_at is not None:
                        if sim_task.fail_at <= t:
                            self._fail(service, state, deployment, sim_task, t)
                for sim_task in list(deployment.tasks):
                    if sim_task.state == "PENDING" and sim_task.start_at is not None:
                        if sim_task.start_at <= t:
                            self._start(deployment, sim_task, t)
            self._reconcile(backend, service, state, t)
        else:
            raise RuntimeError("the ECS simulator did not come to rest")
        self._publish(backend, service, state)

    def _settle(self, backend: Any, service: Any, state: _ServiceState, t: float) -> None:
        self._reconcile(backend, service, state, t)
        self._publish(backend, service, state)

    def _reconcile(self, backend: Any, service: Any, state: _ServiceState, t: float) -> None:
        primary = state.primary
        actives = state.deployments[1:]
        scaler = f"Scaling activity initiated by (deployment {primary.id})"
        if service.status != "ACTIVE":  # deleted: stop everything, start nothing
            stopped = []
            for deployment in state.deployments:
                for sim_task in list(deployment.tasks):
                    if sim_task.state == "RUNNING":
                        stopped.append(sim_task)
                    self._scale_in(deployment, sim_task, t, scaler)
            self._report_stopped(service, stopped, t)
            return

        for deployment in actives:  # old deployments start nothing more
            for sim_task in deployment.pending:
                self._scale_in(deployment, sim_task, t, scaler)

        primary.desired_count = service.desired_count
        excess = len(primary.tasks) - primary.desired_count
        if excess > 0:
            order = primary.pending[::-1] + sorted(
                primary.running, key=lambda s: (s.fail_at is None, -(s.start_at or 0))
            )
            stopped = [s for s in order[:excess] if s.state == "RUNNING"]
            for sim_task in order[:excess]:
                self._scale_in(primary, sim_task, t, scaler)
            self._report_stopped(service, stopped, t)

        cluster = backend.clusters.get(service.cluster_name)
        behaviour = self._behaviour_of(primary)
        if primary.rollout_state != "FAILED" and primary.task_definition and cluster:
            missing = primary.desired_count - len(primary.tasks)
            if missing > 0:
                launched = [
                    self._launch(backend, cluster, service, primary, t) for _ in range(missing)
                ]
                ids = " ".join(f"(task {s.task.id})" for s in launched)
                self._event(service, t, f"has started {len(launched)} tasks: {ids}.")
        if behaviour.kind != "stall":
            for sim_task in primary.pending:
                if sim_task.start_at is None:
                    self._schedule(primary, sim_task, t)

        # An old task stops for every healthy new one, down to the desired count.
        allowed = max(0, service.desired_count - len(primary.healthy))
        old = [(deployment, sim_task) for deployment in actives for sim_task in deployment.running]
        old.sort(key=lambda pair: (pair[1].fail_at is None, -actives.index(pair[0])))
        if len(old) > allowed:
            stopped = []
            for deployment, sim_task in old[: len(old) - allowed]:
                self._scale_in(deployment, sim_task, t, scaler)
                stopped.append(sim_task)
            self._report_stopped(service, stopped, t)

        if (
            primary.rollout_state == "IN_PROGRESS"
            and len(primary.healthy) == primary.desired_count
            and len(primary.tasks) == primary.desired_count
            and not any(deployment.tasks for deployment in actives)
        ):
            primary.rollout_state = "COMPLETED"
            primary.rollout_state_reason = f"ECS deployment {primary.id} completed."
            primary.updated_at = t
            state.last_completed = primary
            del state.deployments[1:]
            self._event(service, t, f"(deployment {primary.id}) deployment completed.")
            self._event(service, t, "has reached a steady state.")

    def _launch(
        self, backend: Any, cluster: Any, service: Any, deployment: _Deployment, t: float
    ) -> _SimTask:
        task = ecs_models.Task(
            cluster=cluster,
            task_definition=deployment.task_definition,
            container_instance_arn=self._place(backend, cluster, service),
            resource_requirements=None,
            backend=backend,
            group=f"service:{service.name}",
            launch_type=service.launch_type or "",
            started_by=deployment.id,
            networking_configuration=service.network_configuration or None,
            platform_version=service.platform_version,
        )
        task._transitions = []  # pinned: moto's ecs::task state machine must not move it
        task.last_status = "PENDING"
        task.created_at = self._at(t)
        task.health_status = "UNKNOWN"
        for container in task.containers:
            container.task_arn = task.task_arn  # moto puts the task definition's ARN here
            container.last_status = "PENDING"
            container.health_status = "UNKNOWN"
            container.exitCode = None
            container.reason = None
        backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
        sim_task = _SimTask(task=task, start_at=None)
        deployment.tasks.append(sim_task)
        deployment.updated_at = t
        if self._behaviour_of(deployment).kind != "stall":
            self._schedule(deployment, sim_task, t)
        return sim_task

    def _place(self, backend: Any, cluster: Any, service: Any) -> str | None:
        """The container instance a new task of the service runs on: the ACTIVE ones whose
        agent is connected, in turn, so a task that dies is replaced on the next host (as
        the rogue process of DESIGN.md's "Cluster health" walked the cluster). None when
        the cluster has no such instance: the task simply runs, as before."""
        instances = sorted(
            (
                i
                for i in backend.container_instances.get(cluster.name, {}).values()
                if i.status == "ACTIVE" and i.agent_connected
            ),
            key=lambda i: i.container_instance_arn,
        )
        if not instances:
            return None
        placed = self._placed.get(service.arn, 0)
        self._placed[service.arn] = placed + 1
        return instances[placed % len(instances)].container_instance_arn

    def _schedule(self, deployment: _Deployment, sim_task: _SimTask, t: float) -> None:
        start_at = max(t, deployment.last_start_slot) + self.task_start_seconds
        deployment.last_start_slot = start_at
        sim_task.start_at = start_at

    def _start(self, deployment: _Deployment, sim_task: _SimTask, t: float) -> None:
        behaviour = self._behaviour_of(deployment)
        if behaviour.kind == "stall" or deployment.status != "PRIMARY":
            sim_task.start_at = None  # stays PENDING
            return
        task = sim_task.task
        task.pull_started_at = task.pull_stopped_at = task.started_at = self._at(t)
        task.connectivity, task.connectivity_at = "CONNECTED", self._at(t)
        for container in task.containers:
            container.last_status = "RUNNING"
        if behaviour.kind == "fail":
            sim_task.fail_at = t + self.task_fail_after_seconds
            sim_task.failure = behaviour
        else:
            if behaviour.kind == "leak":
                sim_task.fail_at = t + self.leak_after_seconds
                sim_task.failure, sim_task.leaks = behaviour, True
            task.health_status = "HEALTHY"
            for container in task.containers:
                container.health_status = "HEALTHY"
        sim_task.state = "RUNNING"
        task.last_status = "RUNNING"
        deployment.updated_at = t

    def _fail(
        self,
        service: Any,
        state: _ServiceState,
        deployment: _Deployment,
        sim_task: _SimTask,
        t: float,
    ) -> None:
        failure = sim_task.failure or _behaviour("exit")
        sim_task.task.health_status = "UNHEALTHY"
        for container in sim_task.task.containers:
            container.health_status = "UNHEALTHY"
        self._stop(
            deployment,
            sim_task,
            t,
            stop_code="EssentialContainerExited",
            reason=failure.reason,
            exit_code=failure.exit_code,
            container_reason=failure.container_reason,
        )
        deployment.failed_tasks += 1
        if deployment is not state.primary or deployment.rollout_state != "IN_PROGRESS":
            return
        if deployment.failed_tasks < self.circuit_breaker_threshold:
            return
        breaker = (service.deployment_configuration or {}).get("deploymentCircuitBreaker") or {}
        enabled, rollback = bool(breaker.get("enable")), bool(breaker.get("rollback"))
        if failure.force_rollback:
            enabled = rollback = True
        if not enabled:
            if not deployment.reported_unable:
                deployment.reported_unable = True
                self._event(service, t, UNABLE_TO_START)
            return
        deployment.rollout_state = "FAILED"
        deployment.rollout_state_reason = CIRCUIT_BREAKER_REASON
        deployment.updated_at = t
        self._event(
            service, t, f"(deployment {deployment.id}) deployment failed: tasks failed to start."
        )
        target = state.last_completed
        if not rollback or deployment.is_rollback or target is None:
            return
        self._start_deployment(service, state, target.task_definition, t, is_rollback=True)
        self._event(service, t, f"rolling back to deployment {target.id}.")

    def _scale_in(self, deployment: _Deployment, sim_task: _SimTask, t: float, reason: str) -> None:
        self._stop(
            deployment,
            sim_task,
            t,
            stop_code="ServiceSchedulerInitiated",
            reason=reason,
            exit_code=0 if sim_task.state == "RUNNING" else None,
        )

    def _stop(
        self,
        deployment: _Deployment,
        sim_task: _SimTask,
        t: float,
        *,
        stop_code: str,
        reason: str,
        exit_code: int | None,
        container_reason: str | None = None,
    ) -> None:
        task = sim_task.task
        at = self._at(t)
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopping_at = task.execution_stopped_at = task.stopped_at = at
        for index, container in enumerate(task.containers):
            container.exitCode = exit_code if index == 0 else None
            container.reason = container_reason if index == 0 else None
            container.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.last_status = "STOPPED"
        sim_task.state = "STOPPED"
        sim_task.start_at = sim_task.fail_at = None
        if sim_task in deployment.tasks:
            deployment.tasks.remove(sim_task)
        deployment.updated_at = t

    def _report_stopped(self, service: Any, stopped: list[_SimTask], t: float) -> None:
        if stopped:
            ids = " ".join(f"(task {s.task.id})" for s in stopped)
            self._event(service, t, f"has stopped {len(stopped)} running tasks: {ids}.")

    def _event(self, service: Any, t: float, message: str) -> None:
        event = {
            "id": str(mock_random.uuid4()),
            "createdAt": self._at(t),
            "message": f"(service {service.name}) {message}",
        }
        service.events = [event, *service.events][:MAX_EVENTS]  # newest first, as ECS

    def _publish(self, backend: Any, service: Any, state: _ServiceState) -> None:
        """Write the state where moto's responses read it (fresh objects, never mutated)."""
        deployments = []
        for deployment in state.deployments:
            running, pending = len(deployment.running), len(deployment.pending)
            entry = {
                "id": deployment.id,
                "status": deployment.status,
                "taskDefinition": deployment.task_definition_arn,
                "desiredCount": (
                    deployment.desired_count if deployment.status == "PRIMARY" else running
                ),
                "pendingCount": pending,
                "runningCount": running,
                "failedTasks": deployment.failed_tasks,
                "createdAt": self._at(deployment.created_at),
                "updatedAt": self._at(deployment.updated_at),
                "launchType": service.launch_type,
                "platformVersion": service.platform_version,
                "networkConfiguration": service.network_configuration or None,
                "rolloutState": deployment.rollout_state,
                "rolloutStateReason": deployment.rollout_state_reason,
            }
            deployments.append({k: v for k, v in entry.items() if v is not None})
        service.deployments = deployments
        service.running_count = sum(len(d.running) for d in state.deployments)
        service.pending_count = sum(len(d.pending) for d in state.deployments)
        cluster = backend.clusters.get(service.cluster_name)
        if cluster is not None:
            tasks = list(backend.tasks.get(cluster.name, {}).values())
            statuses = [task._status for task in tasks]
            cluster.running_tasks_count = statuses.count("RUNNING")
            cluster.pending_tasks_count = sum(
                status in ("PROVISIONING", "PENDING", "ACTIVATING") for status in statuses
            )

    def _forget_old_tasks(self, backend: Any, t: float) -> None:
        """ECS forgets STOPPED tasks after about an hour; so does the simulator."""
        horizon = self._at(t - STOPPED_TASK_RETENTION_SECONDS)
        for tasks in backend.tasks.values():
            for arn, task in list(tasks.items()):
                stopped_at = getattr(task, "stopped_at", None)
                if task._status == "STOPPED" and stopped_at is not None and stopped_at < horizon:
                    del tasks[arn]


def _next_event(state: _ServiceState) -> float | None:
    times = []
    for deployment in state.deployments:
        for sim_task in deployment.tasks:
            if sim_task.state == "PENDING" and sim_task.start_at is not None:
                times.append(sim_task.start_at)
            elif sim_task.state == "RUNNING" and sim_task.fail_at is not None:
                times.append(sim_task.fail_at)
    return min(times, default=None)


def _deployment_configuration(configuration: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration as DescribeServices shows it: ECS's defaults filled in."""
    merged: dict[str, Any] = {
        **DEFAULT_DEPLOYMENT_CONFIGURATION,
        **{k: v for k, v in (configuration or {}).items() if v is not None},
    }
    merged["deploymentCircuitBreaker"] = {
        **DEFAULT_DEPLOYMENT_CONFIGURATION["deploymentCircuitBreaker"],
        **(merged.get("deploymentCircuitBreaker") or {}),
    }
    return merged


def create_service(
    ecs: Any,
    *,
    cluster: str,
    name: str,
    image: str,
    container: str = "app",
    desired_count: int = 2,
    memory: int = 256,
) -> str:
    """A bridge-mode service of one essential container on `image` (revision 1 of family
    `name`), for the tests, the bench and the demo; returns its task definition ARN."""
    arn = ecs.register_task_definition(
        family=name,
        networkMode="bridge",
        containerDefinitions=[
            {"name": container, "image": image, "memory": memory, "essential": True}
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(
        cluster=cluster, serviceName=name, taskDefinition=arn, desiredCount=desired_count
    )
    return arn
