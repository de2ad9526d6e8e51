"""What an application config file may say, and what parsing one gives.

The keys each section allows, the Application fields the file sets (with the kind of value
each takes), and the dataclasses parse fills in: an application setting left as None was
not in the file. Durations are written as 90s, 10m, 1h or 1h30m; parse_duration reads them
and format_duration writes the largest whole unit, so an exported file reads back the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from clusters.models import ClusterKind, MigrationPlan, PlacementKind, ProcessType

MAX_INTEGER = 2**31 - 1  # PositiveIntegerField's upper bound on PostgreSQL
BACKENDS = ("local", "jenkins")
FRONT_TYPES = (ProcessType.WEB, ProcessType.STATIC)
BACK_TYPES = (ProcessType.WORKER, ProcessType.POLLER)

TOP_KEYS = (
    "application",
    "name",
    "git_remote",
    "default_branch",
    "build",
    "image_repository",
    "rollout",
    "clusters",
    "services",
    "migration",
)
BUILD_KEYS = ("backend", "command", "jenkins_job", "timeout", "hold_window", "auto_retries")
ROLLOUT_KEYS = ("phase_timeout", "soak", "memory_guard", "crash_loop")
MEMORY_GUARDS = ("refuse", "warn")
CRASH_LOOPS = ("restore", "scale_to_zero", "report")
# Choices whose first is the default: an export leaves the default out, so that files
# written before the key existed stay the same.
CHOICES = {"memory_guard": MEMORY_GUARDS, "crash_loop": CRASH_LOOPS}
CLUSTER_KEYS = ("region", "arn", "docker_host", "drain_disconnected", "reserved_memory_minimum")
SERVICE_KEYS = ("name", "process_type", "phase", "health_check_url", "placements")
ECS_PLACEMENT_KEYS = ("cluster", "ecs_service", "container")
LEGACY_PLACEMENT_KEYS = ("legacy_job", "legacy_version")
# A Docker placement: `docker` names the host, the rest is Placement.docker_config.
DOCKER_CONFIG_KEYS = (
    "replicas",
    "memory",
    "command",
    "env",
    "ports",
    "network",
    "health_check",
    "stop_timeout",
    "max_surge",
    "min_healthy",
    "grace",
)
DOCKER_PLACEMENT_KEYS = ("docker", *DOCKER_CONFIG_KEYS)
PLACEMENT_KEYS = ECS_PLACEMENT_KEYS + LEGACY_PLACEMENT_KEYS + DOCKER_PLACEMENT_KEYS
HEALTH_CHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period")
# What a Docker placement's config holds for a key the file leaves out (memory has no
# default: it is required). command None: the image's own; health_check None: the image's
# own HEALTHCHECK if it has one, else `grace`. Durations are in seconds. max_surge and
# min_healthy are percents of replicas, like ECS's maximumPercent - 100 and
# minimumHealthyPercent: by default a whole new set starts before the old one stops.
DOCKER_DEFAULTS = {
    "replicas": 1,
    "command": None,
    "env": {},
    "ports": [],
    "network": "bridge",
    "health_check": None,
    "stop_timeout": 10,
    "max_surge": 100,
    "min_healthy": 100,
    "grace": 10,
}
DOCKER_NETWORKS = ("bridge", "host", "none")
HEALTH_CHECK_DEFAULTS = {"interval": 10, "timeout": 5, "retries": 3, "start_period": 0}
DOCKER_DURATIONS = ("stop_timeout", "grace")
HEALTH_CHECK_DURATIONS = ("interval", "timeout", "start_period")
MIGRATION_KEYS = ("proof", "phases")
PROOF_KEYS = ("deploys", "hours")
MIGRATION_PHASE_KEYS = ("name", "services")

# The application's settings: (path in the file, Application field, kind of value).
APPLICATION_FIELDS = (
    ("name", "name", "text"),
    ("git_remote", "git_remote_url", "git_remote"),
    ("default_branch", "default_branch", "branch"),
    ("build.backend", "build_backend", "backend"),
    ("build.command", "build_command", "command"),
    ("build.jenkins_job", "jenkins_job", "optional_text"),
    ("build.timeout", "build_timeout_seconds", "positive_duration"),
    ("build.hold_window", "build_hold_minutes", "minutes"),
    ("build.auto_retries", "build_auto_retries", "count"),
    ("image_repository", "image_repository", "image"),
    ("rollout.phase_timeout", "phase_timeout_seconds", "positive_duration"),
    ("rollout.soak", "soak_seconds", "duration"),
    ("rollout.memory_guard", "memory_guard", "memory_guard"),
    ("rollout.crash_loop", "crash_loop", "crash_loop"),
)

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    region: str | None = None  # None: not given (left alone, or the default when created)
    arn: str | None = None
    docker_host: str | None = None  # given: a Docker host, not an ECS cluster
    drain_disconnected: bool | None = None  # the agent watch may drain (clusters/health)
    reserved_memory_minimum: int | None = None  # MiB kept for the system (clusters/health)

    @property
    def kind(self) -> str:
        return ClusterKind.DOCKER.value if self.docker_host else ClusterKind.ECS.value


@dataclass(frozen=True)
class PlacementConfig:
    kind: str  # "ecs", "legacy" or "docker"
    cluster: str = ""  # an ECS placement's cluster, or a Docker placement's host
    ecs_service: str = ""
    container: str = ""
    legacy_job: str = ""
    legacy_version: str = ""  # what the job ran before Fat Controller deployed it; "" unknown
    # A Docker placement's containers, every key of DOCKER_DEFAULTS and memory filled in.
    docker_config: dict = field(default_factory=dict, hash=False)

    def describe(self) -> str:
        if self.kind == PlacementKind.LEGACY:
            return f"legacy job {self.legacy_job}"
        if self.kind == PlacementKind.DOCKER:
            return f"docker host {self.cluster}"
        return f"{self.cluster}/{self.ecs_service}"


@dataclass
class ServiceConfig:
    name: str
    process_type: str
    phase: int = 1
    health_check_url: str = ""
    placements: list[PlacementConfig] = field(default_factory=list)


@dataclass(frozen=True)
class MigrationPhaseConfig:
    name: str
    services: tuple[str, ...]  # service names, in the file's order


@dataclass
class MigrationConfig:
    """The migration plan: its phases in order. Their states are not in the file."""

    proof_deploys: int = MigrationPlan._meta.get_field("proof_deploys").default
    proof_hours: int = MigrationPlan._meta.get_field("proof_hours").default
    phases: list[MigrationPhaseConfig] = field(default_factory=list)


@dataclass
class AppConfig:
    """A parsed file. An application setting left as None was not in the file."""

    slug: str
    name: str | None = None
    git_remote_url: str | None = None
    default_branch: str | None = None
    build_backend: str | None = None
    build_command: str | None = None
    jenkins_job: str | None = None
    build_timeout_seconds: int | None = None
    build_hold_minutes: int | None = None
    build_auto_retries: int | None = None
    image_repository: str | None = None
    phase_timeout_seconds: int | None = None
    soak_seconds: int | None = None
    memory_guard: str | None = None
    crash_loop: str | None = None
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    services: list[ServiceConfig] = field(default_factory=list)
    migration: MigrationConfig | None = None  # None: no plan (an existing one is removed)
    warnings: list[str] = field(default_factory=list, compare=False)

    def application_values(self) -> dict[str, Any]:
        """The Application fields the file sets, by field name."""
        values = {}
        for _path, name, _kind in APPLICATION_FIELDS:
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        return values


def parse_duration(value: Any) -> int:
    """Seconds from 90s, 10m, 1h, 1h30m or a whole number of seconds; ValueError if not."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(value)
        return value
    if isinstance(value, str):
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if text and match:
            hours, minutes, seconds = (int(group or 0) for group in match.groups())
            return hours * 3600 + minutes * 60 + seconds
    raise ValueError(value)


def format_duration(seconds: int) -> str:
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
