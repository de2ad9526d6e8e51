"""An application's setup as a file: parse and validate it, apply it, export it.

The format is documented in docs/app-config.md; examples/demo-shop.fatcontroller.yml is a
full example. The file is the truth for what it says:

- the application's settings it gives are set; the ones it leaves out are left alone;
- the clusters it lists are created or updated by name (clusters are shared between
  applications, so a cluster is never removed by a file);
- its services and their placements are the whole list: what the file does not list is
  removed, except a placement with rollouts in its history, which is refused.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.db.models import Count, ProtectedError

from builds.local import split_command
from deploys.git import InvalidBranchName, validate_branch_name
from deploys.models import Application

from .models import Cluster, Placement, PlacementKind, ProcessType, Service

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
)
BUILD_KEYS = ("backend", "command", "jenkins_job", "timeout", "hold_window", "auto_retries")
ROLLOUT_KEYS = ("phase_timeout", "soak")
CLUSTER_KEYS = ("region", "arn")
SERVICE_KEYS = ("name", "process_type", "phase", "health_check_url", "placements")
PLACEMENT_KEYS = ("cluster", "ecs_service", "container", "legacy_job")

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
)

_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_CLUSTER_ARN = re.compile(r"arn:aws[a-z-]*:ecs:([a-z0-9-]+):\d{12}:cluster/[A-Za-z0-9_-]+")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_CREDENTIALS_IN_URL = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", re.IGNORECASE)


class ConfigError(Exception):
    """The file cannot be used; errors has every problem found, each naming its path."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    region: str | None = None  # None: not given (left alone, or the default when created)
    arn: str | None = None


@dataclass(frozen=True)
class PlacementConfig:
    kind: str  # "ecs" or "legacy"
    cluster: str = ""
    ecs_service: str = ""
    container: str = ""
    legacy_job: str = ""

    def describe(self) -> str:
        if self.kind == PlacementKind.LEGACY:
            return f"legacy job {self.legacy_job}"
        return f"{self.cluster}/{self.ecs_service}"


@dataclass
class ServiceConfig:
    name: str
    process_type: str
    phase: int = 1
    health_check_url: str = ""
    placements: list[PlacementConfig] = field(default_factory=list)


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
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    services: list[ServiceConfig] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list, compare=False)

    def application_values(self) -> dict[str, Any]:
        """The Application fields the file sets, by field name."""
        values = {}
        for _path, name, _kind in APPLICATION_FIELDS:
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        return values


@dataclass
class ApplyReport:
    application: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)

    def lines(self) -> list[str]:
        if not self.changed:
            head = f"{self.application}: unchanged"
        else:
            counts = (
                f"{len(self.created)} created, {len(self.updated)} updated, "
                f"{len(self.removed)} removed"
            )
            head = f"{self.application}: {counts}"
        if self.dry_run:
            head += " (dry run: nothing was written)"
        lines = [head]
        lines += [f"  created {item}" for item in self.created]
        lines += [f"  updated {item}" for item in self.updated]
        lines += [f"  removed {item}" for item in self.removed]
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


# Durations


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


# YAML


class _Loader(yaml.SafeLoader):
    """The safe loader, noting keys given twice in a mapping (plain YAML keeps the last)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.duplicates: list[str] = []


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            loader.duplicates.append(
                f"line {line}: key {key!r} is given twice (first on line {seen[key]})"
            )
        seen.setdefault(key, line)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str) -> Any:
    loader = _Loader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError([f"not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()
    if loader.duplicates:
        raise ConfigError(loader.duplicates)
    return data


# Parsing


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe_value(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "nothing"
    return f"{type(value).__name__} {value!r}"


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Parser:
    def __init__(self):
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.declared_clusters: set = set()  # every cluster named, even one with a bad value

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}" if path else message)

    def mapping(self, value, path, allowed, required=()) -> dict | None:
        """The known keys of a mapping; unknown keys and missing required ones are errors."""
        if not isinstance(value, dict):
            self.error(path or "the file", f"must be a mapping, not {_describe_value(value)}")
            return None
        known = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error(_join(path, str(key)), "keys must be strings (quote it)")
            elif key not in allowed:
                hint = _did_you_mean(key, allowed) or f" (known keys: {', '.join(allowed)})"
                self.error(_join(path, key), "unknown key" + hint)
            else:
                known[key] = item
        for key in required:
            if key not in value:
                self.error(_join(path, key), "required")
        return known

    def text(self, value, path, *, max_length, optional=False) -> str | None:
        """A string; optional ones may be empty (null counts as empty)."""
        if value is None and optional:
            return ""
        if not isinstance(value, str):
            self.error(path, f"must be a string, not {_describe_value(value)}")
            return None
        if not value.strip() and not optional:
            self.error(path, "must not be empty")
            return None
        if len(value) > max_length:
            self.error(path, f"must be at most {max_length} characters, not {len(value)}")
            return None
        return value

    def integer(self, value, path, *, minimum) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"must be a whole number, not {_describe_value(value)}")
            return None
        if not minimum <= value <= MAX_INTEGER:
            if minimum == 1:
                self.error(path, f"must be a positive whole number, not {value}")
            else:
                self.error(path, f"must be a whole number of at least {minimum}, not {value}")
            return None
        return value

    def duration(self, value, path, *, positive=False) -> int | None:
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.error(
                path,
                f"{_describe_value(value)} is not a duration: write 90s, 10m, 1h, 1h30m "
                "or a whole number of seconds",
            )
            return None
        if seconds > MAX_INTEGER:
            self.error(path, "is too long")
            return None
        if positive and seconds == 0:
            self.error(path, "must be longer than 0s")
            return None
        return seconds

    def choice(self, value, path, choices) -> str | None:
        if not isinstance(value, str) or value not in choices:
            shown = repr(value) if isinstance(value, str) else _describe_value(value)
            hint = _did_you_mean(value, choices) if isinstance(value, str) else ""
            self.error(path, f"{shown} is not one of {', '.join(choices)}{hint}")
            return None
        return value

    def application_value(self, value, path, field_name, kind):
        max_length = Application._meta.get_field(field_name).max_length
        if kind == "text":
            return self.text(value, path, max_length=max_length)
        if kind == "optional_text":
            return self.text(value, path, max_length=max_length, optional=True)
        if kind == "git_remote":
            remote = self.text(value, path, max_length=max_length)
            if remote is not None and remote.startswith("-"):
                self.error(path, "must not start with '-'")
                return None
            if remote is not None and _CREDENTIALS_IN_URL.match(remote):
                self.error(path, "must not carry a password: git uses the worker's SSH keys")
                return None
            return remote
        if kind == "branch":
            branch = self.text(value, path, max_length=max_length)
            if branch is not None:
                try:
                    validate_branch_name(branch)
                except InvalidBranchName as exc:
                    self.error(path, str(exc))
                    return None
            return branch
        if kind == "command":
            command = self.text(value, path, max_length=max_length)
            if command is not None:
                try:
                    split_command(command)
                except ValueError as exc:
                    self.error(path, f"cannot be split like a shell would: {exc}")
                    return None
            return command
        if kind == "backend":
            return self.choice(value, path, BACKENDS)
        if kind == "positive_duration":
            return self.duration(value, path, positive=True)
        if kind == "duration":
            return self.duration(value, path)
        if kind == "minutes":
            seconds = self.duration(value, path)
            if seconds is not None and seconds % 60:
                self.error(path, f"must be whole minutes, not {format_duration(seconds)}")
                return None
            return None if seconds is None else seconds // 60
        if kind == "count":
            return self.integer(value, path, minimum=0)
        if kind == "image":
            image = self.text(value, path, max_length=max_length, optional=True)
            if image and ("@" in image or ":" in image.rsplit("/", 1)[-1]):
                self.error(path, "give the repository without a tag or digest: builds add the tag")
                return None
            return image
        raise AssertionError(kind)

    def cluster(self, name, value, path) -> ClusterConfig | None:
        known = self.mapping(value, path, CLUSTER_KEYS)
        if known is None:
            return None
        region = arn = None
        if "region" in known:
            region = self.text(known["region"], _join(path, "region"), max_length=40)
            if region is not None and not _REGION.fullmatch(region):
                self.error(_join(path, "region"), f"{region!r} is not an AWS region")
                region = None
        if "arn" in known:
            arn = self.text(known["arn"], _join(path, "arn"), max_length=300, optional=True)
            match = _CLUSTER_ARN.fullmatch(arn) if arn else None
            if arn and not match:
                self.error(_join(path, "arn"), f"{arn!r} is not an ECS cluster ARN")
            elif match and region and match.group(1) != region:
                self.error(
                    _join(path, "arn"),
                    f"is in region {match.group(1)}, but the cluster's region is {region}",
                )
        return ClusterConfig(name=name, region=region, arn=arn)

    def placement(self, value, path) -> PlacementConfig | None:
        known = self.mapping(value, path, PLACEMENT_KEYS)
        if known is None:
            return None
        if "legacy_job" in known:
            others = [key for key in ("cluster", "ecs_service", "container") if key in known]
            if others:
                self.error(
                    path, f"a legacy placement takes only legacy_job, not {', '.join(others)}"
                )
            job = self.text(known["legacy_job"], _join(path, "legacy_job"), max_length=255)
            if others or job is None:
                return None
            return PlacementConfig(kind=PlacementKind.LEGACY.value, legacy_job=job)
        if not known:
            self.error(
                path,
                "give cluster, ecs_service and container for an ECS placement, "
                "or legacy_job for a legacy one",
            )
            return None
        ok = True
        needed = (
            ("cluster", "a cluster"),
            ("ecs_service", "an ecs_service"),
            ("container", "a container"),
        )
        for key, missing in needed:
            if key not in known:
                self.error(path, f"an ECS placement needs {missing}")
                ok = False
        cluster = ecs_service = container = None
        if "cluster" in known:
            cluster = self.text(known["cluster"], _join(path, "cluster"), max_length=200)
            if cluster is not None and cluster not in self.declared_clusters:
                names = [c for c in self.declared_clusters if isinstance(c, str)]
                self.error(
                    _join(path, "cluster"),
                    f"no cluster {cluster!r} under clusters" + _did_you_mean(cluster, names),
                )
                cluster = None
        if "ecs_service" in known:
            ecs_service = self.text(
                known["ecs_service"], _join(path, "ecs_service"), max_length=255
            )
        if "container" in known:  # the container whose image deploys replace
            container = self.text(known["container"], _join(path, "container"), max_length=255)
        if not ok or cluster is None or ecs_service is None or container is None:
            return None
        return PlacementConfig(
            kind=PlacementKind.ECS.value,
            cluster=cluster,
            ecs_service=ecs_service,
            container=container,
        )

    def service(self, value, path) -> ServiceConfig | None:
        known = self.mapping(value, path, SERVICE_KEYS, required=("name", "process_type"))
        if known is None:
            return None
        name = process_type = None
        if "name" in known:
            name = self.text(known["name"], _join(path, "name"), max_length=200)
        if "process_type" in known:
            process_type = self.choice(
                known["process_type"], _join(path, "process_type"), ProcessType.values
            )
        phase = 1
        if "phase" in known:
            phase = self.integer(known["phase"], _join(path, "phase"), minimum=1)
        health_check_url = ""
        if "health_check_url" in known:
            health_check_url = self.text(
                known["health_check_url"],
                _join(path, "health_check_url"),
                max_length=Service._meta.get_field("health_check_url").max_length,
                optional=True,
            )
            if health_check_url:
                try:
                    URLValidator(schemes=["http", "https"])(health_check_url)
                except ValidationError:
                    self.error(
                        _join(path, "health_check_url"),
                        f"{health_check_url!r} is not an http(s) URL",
                    )
                    health_check_url = None
        placements: list[PlacementConfig | None] = []
        if "placements" in known:
            items = known["placements"]
            if not isinstance(items, list):
                self.error(
                    _join(path, "placements"),
                    f"must be a list, not {_describe_value(items)} (write [] for none)",
                )
            else:
                placements = [
                    self.placement(item, f"{path}.placements[{n}]") for n, item in enumerate(items)
                ]
        if None in (name, process_type, phase, health_check_url) or None in placements:
            return None
        if not placements:
            self.warnings.append(f"{path}: service {name!r} has no placements: deploys skip it")
        return ServiceConfig(
            name=name,
            process_type=process_type,
            phase=phase,
            health_check_url=health_check_url,
            placements=placements,
        )


def parse_app_config(text: str) -> AppConfig:
    """Parse and validate a file; raise ConfigError with every problem found.

    The returned config's warnings hold advice that does not stop the file being loaded.
    """
    data = _load_yaml(text)
    if data is None:
        raise ConfigError(["the file is empty: it needs at least application and services"])
    parser = _Parser()
    top = parser.mapping(data, "", TOP_KEYS, required=("application", "services"))
    if top is None:
        raise ConfigError(parser.errors)
    sections = {"": top}
    for section, keys in (("build", BUILD_KEYS), ("rollout", ROLLOUT_KEYS)):
        if section in top:
            sections[section] = parser.mapping(top[section], section, keys) or {}

    slug = None
    if "application" in top:
        slug = parser.text(top["application"], "application", max_length=50)
        if slug is not None and not _SLUG.fullmatch(slug):
            parser.error("application", f"{slug!r} is not a slug (letters, digits, - and _)")
            slug = None

    values: dict[str, Any] = {}
    for path, field_name, kind in APPLICATION_FIELDS:
        section, _, key = path.rpartition(".")
        given = sections.get(section, {})
        if key in given:
            values[field_name] = parser.application_value(given[key], path, field_name, kind)

    clusters: dict[str, ClusterConfig] = {}
    raw_clusters = top.get("clusters", {})
    if not isinstance(raw_clusters, dict):
        parser.error("clusters", f"must be a mapping, not {_describe_value(raw_clusters)}")
        raw_clusters = {}
    for name, value in raw_clusters.items():
        path = f"clusters.{name}"
        parser.declared_clusters.add(name)
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            parser.error(path, "a cluster's name must be a string of 1 to 200 characters")
            continue
        cluster = parser.cluster(name, value, path)
        if cluster is not None:
            clusters[name] = cluster

    services: list[ServiceConfig] = []
    raw_services = top.get("services", [])
    if not isinstance(raw_services, list):
        parser.error("services", f"must be a list, not {_describe_value(raw_services)}")
        raw_services = []
    parsed = [parser.service(item, f"services[{n}]") for n, item in enumerate(raw_services)]

    # Across services: unique names, each ECS service placed once, each job once a service.
    names: dict[str, int] = {}
    ecs_targets: dict[tuple[str, str], str] = {}
    used_clusters: set[str] = set()
    for n, service in enumerate(parsed):
        if service is None:
            continue
        services.append(service)
        if service.name in names:
            parser.error(
                f"services[{n}].name",
                f"{service.name!r} is already the name of services[{names[service.name]}]",
            )
        names.setdefault(service.name, n)
        jobs: dict[str, str] = {}
        for m, placement in enumerate(service.placements):
            path = f"services[{n}].placements[{m}]"
            if placement.kind == PlacementKind.LEGACY:
                if placement.legacy_job in jobs:
                    parser.error(
                        _join(path, "legacy_job"),
                        f"{placement.legacy_job!r} is already in {jobs[placement.legacy_job]}",
                    )
                jobs.setdefault(placement.legacy_job, path)
                continue
            used_clusters.add(placement.cluster)
            target = (placement.cluster, placement.ecs_service)
            if target in ecs_targets:
                parser.error(
                    path, f"{placement.describe()} is already placed by {ecs_targets[target]}"
                )
            ecs_targets.setdefault(target, path)

    if parser.errors:
        raise ConfigError(parser.errors)

    warnings = _phase_warnings(services)
    warnings += parser.warnings
    warnings += [
        f"clusters.{name}: not used by any placement (it is created, but export leaves it out)"
        for name in clusters
        if name not in used_clusters
    ]
    return AppConfig(slug=slug, clusters=clusters, services=services, warnings=warnings, **values)


def _phase_warnings(services: list[ServiceConfig]) -> list[str]:
    """Web and static services go out last, after the workers and pollers they depend on."""
    warnings = []
    back = [(n, s) for n, s in enumerate(services) if s.process_type in BACK_TYPES]
    for n, service in enumerate(services):
        if service.process_type not in FRONT_TYPES:
            continue
        later = [f"{s.name!r} in phase {s.phase}" for _m, s in back if s.phase > service.phase]
        if later:
            warnings.append(
                f"services[{n}]: {service.process_type} service {service.name!r} goes out in "
                f"phase {service.phase}, before the workers and pollers it may depend on "
                f"({', '.join(later)}); web and static services belong in the last phase(s)"
            )
    return warnings


# Applying


def _show(kind: str, value: Any) -> str:
    if kind in ("positive_duration", "duration"):
        return format_duration(value)
    if kind == "minutes":
        return format_duration(value * 60)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _describe_placement(placement: Placement) -> str:
    if placement.kind == PlacementKind.LEGACY:
        where = f"legacy job {placement.legacy_job or '(none)'}"
    else:
        cluster = placement.cluster.name if placement.cluster_id else "(no cluster)"
        where = f"{cluster}/{placement.ecs_service_name or '(no ECS service)'}"
    return f"{placement.service.name} on {where}"


def _placement_key(placement: Placement) -> tuple | None:
    """What a placement is matched by; None when no file could name it."""
    if placement.kind == PlacementKind.ECS and placement.cluster_id and placement.ecs_service_name:
        return ("ecs", placement.cluster.name, placement.ecs_service_name)
    if placement.kind == PlacementKind.LEGACY and placement.legacy_job:
        return ("legacy", placement.service.name, placement.legacy_job)
    return None


def _config_key(service: ServiceConfig, placement: PlacementConfig) -> tuple:
    if placement.kind == PlacementKind.ECS:
        return ("ecs", placement.cluster, placement.ecs_service)
    return ("legacy", service.name, placement.legacy_job)


def apply_app_config(
    config: AppConfig, *, create: bool = False, dry_run: bool = False
) -> ApplyReport:
    """Make the database say what the file says, in one transaction; return what changed.

    Raises ConfigError, with nothing changed, when the application does not exist (unless
    create), or when the file would remove a placement that has rollouts. With dry_run the
    changes are made and rolled back, so the report says what would change.
    """
    report = ApplyReport(application=config.slug, warnings=list(config.warnings), dry_run=dry_run)
    with transaction.atomic():
        _apply(config, create, report)
        if dry_run:
            transaction.set_rollback(True)
    return report


def _apply(config: AppConfig, create: bool, report: ApplyReport) -> None:
    application = _apply_application(config, create, report)
    clusters = _apply_clusters(config, application, report)

    errors = []
    services = {s.name: s for s in application.services.order_by("id")}
    existing = list(
        Placement.objects.filter(service__application=application)
        .select_related("cluster", "service")
        .order_by("id")
    )
    by_key: dict[tuple, Placement] = {}
    unmatched: list[Placement] = []
    for placement in existing:
        key = _placement_key(placement)
        if key is None or key in by_key:
            unmatched.append(placement)
        else:
            by_key[key] = placement

    # Another application's ECS service is not this file's to take.
    targets = {
        (p.cluster, p.ecs_service): (n, m)
        for n, s in enumerate(config.services)
        for m, p in enumerate(s.placements)
        if p.kind == PlacementKind.ECS
    }
    if targets:
        taken = (
            Placement.objects.filter(
                kind=PlacementKind.ECS,
                cluster__name__in={c for c, _ in targets},
                ecs_service_name__in={e for _, e in targets},
            )
            .exclude(service__application=application)
            .select_related("cluster", "service__application")
        )
        for other in taken:
            where = targets.get((other.cluster.name, other.ecs_service_name))
            if where:
                errors.append(
                    f"services[{where[0]}].placements[{where[1]}]: "
                    f"{other.cluster.name}/{other.ecs_service_name} is already a placement of "
                    f"{other.service.application.slug}'s service {other.service.name!r}"
                )

    plan: list[tuple[ServiceConfig, PlacementConfig, Placement | None]] = []
    for service in config.services:
        for placement in service.placements:
            plan.append((service, placement, by_key.pop(_config_key(service, placement), None)))
    doomed = unmatched + list(by_key.values())
    wanted_names = {s.name for s in config.services}
    doomed_services = [s for name, s in services.items() if name not in wanted_names]

    if doomed:
        with_history = (
            Placement.objects.filter(pk__in=[p.pk for p in doomed])
            .annotate(rollouts_count=Count("rollouts"))
            .filter(rollouts_count__gt=0)
        )
        counts = {p.pk: p.rollouts_count for p in with_history}
        for placement in doomed:
            if placement.pk in counts:
                gone = (
                    f" (its service {placement.service.name!r} is not in the file)"
                    if placement.service.name not in wanted_names
                    else ""
                )
                errors.append(
                    f"placement {_describe_placement(placement)} has {counts[placement.pk]} "
                    f"rollout(s) in its deploy history and cannot be removed{gone}: "
                    "keep it in the file"
                )
    if errors:
        raise ConfigError(errors)

    for service in config.services:
        _apply_service(application, service, services, report)
    for service, wanted, placement in plan:
        _apply_placement(services[service.name], wanted, placement, clusters, report)
    try:
        for placement in doomed:
            report.removed.append(f"placement {_describe_placement(placement)}")
            placement.delete()
        for service in doomed_services:
            report.removed.append(f"service {service.name}")
            service.delete()
    except ProtectedError as exc:  # a rollout made since the check
        raise ConfigError([f"cannot remove what the file leaves out: {exc.args[0]}"]) from None


def _apply_application(config: AppConfig, create: bool, report: ApplyReport) -> Application:
    values = config.application_values()
    application = Application.objects.select_for_update().filter(slug=config.slug).first()
    if application is None:
        if not create:
            raise ConfigError(
                [f"application: no application {config.slug!r}; load with --create to create it"]
            )
        if not values.get("git_remote_url"):
            raise ConfigError(["git_remote: required to create the application"])
        values.setdefault("name", config.slug)
        application = Application.objects.create(slug=config.slug, **values)
        report.created.append(f"application {config.slug}")
        return application
    changes = []
    for path, name, kind in APPLICATION_FIELDS:
        if name in values and getattr(application, name) != values[name]:
            old = getattr(application, name)
            changes.append((name, f"{path} {_show(kind, old)} -> {_show(kind, values[name])}"))
            setattr(application, name, values[name])
    if changes:
        application.save(update_fields=[name for name, _ in changes])
        report.updated.append(
            f"application {config.slug}: " + "; ".join(text for _, text in changes)
        )
    return application


def _apply_clusters(config: AppConfig, application: Application, report) -> dict[str, Cluster]:
    existing = {
        c.name: c for c in Cluster.objects.select_for_update().filter(name__in=config.clusters)
    }
    for name, wanted in config.clusters.items():
        cluster = existing.get(name)
        if cluster is None:
            cluster = Cluster(name=name)
            for attribute in ("region", "arn"):
                if getattr(wanted, attribute) is not None:
                    setattr(cluster, attribute, getattr(wanted, attribute))
            cluster.save()
            existing[name] = cluster
            report.created.append(f"cluster {name} ({cluster.region})")
            continue
        changes = []
        for attribute in ("region", "arn"):
            value = getattr(wanted, attribute)
            if value is not None and getattr(cluster, attribute) != value:
                changes.append(
                    (attribute, f"{attribute} {getattr(cluster, attribute)!r} -> {value!r}")
                )
                setattr(cluster, attribute, value)
        if changes:
            cluster.save(update_fields=[attribute for attribute, _ in changes])
            others = sorted(
                set(
                    Placement.objects.filter(cluster=cluster)
                    .exclude(service__application=application)
                    .values_list("service__application__slug", flat=True)
                )
            )
            shared = f" (also used by {', '.join(others)})" if others else ""
            report.updated.append(
                f"cluster {name}: " + "; ".join(text for _, text in changes) + shared
            )
    return existing


def _apply_service(application, wanted: ServiceConfig, services: dict, report) -> None:
    fields = {
        "process_type": wanted.process_type,
        "phase": wanted.phase,
        "health_check_url": wanted.health_check_url,
    }
    service = services.get(wanted.name)
    if service is None:
        services[wanted.name] = Service.objects.create(
            application=application, name=wanted.name, **fields
        )
        report.created.append(
            f"service {wanted.name} ({wanted.process_type}, phase {wanted.phase})"
        )
        return
    changes = []
    for name, value in fields.items():
        if getattr(service, name) != value:
            changes.append(
                (name, f"{name} {_show('', getattr(service, name))} -> {_show('', value)}")
            )
            setattr(service, name, value)
    if changes:
        service.save(update_fields=[name for name, _ in changes])
        report.updated.append(f"service {wanted.name}: " + "; ".join(t for _, t in changes))


def _apply_placement(service, wanted: PlacementConfig, placement, clusters, report) -> None:
    fields = {
        "service": service,
        "kind": wanted.kind,
        "cluster": clusters[wanted.cluster] if wanted.kind == PlacementKind.ECS else None,
        "ecs_service_name": wanted.ecs_service,
        "container_name": wanted.container,
        "legacy_job": wanted.legacy_job,
    }
    if placement is None:
        placement = Placement.objects.create(**fields)
        report.created.append(f"placement {_describe_placement(placement)}")
        return
    changes = []
    for name, value in fields.items():
        old = getattr(placement, name)
        if old != value:
            shown_old = old.name if hasattr(old, "name") else _show("", old)
            shown_new = value.name if hasattr(value, "name") else _show("", value)
            changes.append((name, f"{name} {shown_old} -> {shown_new}"))
            setattr(placement, name, value)
    if changes:
        placement.save(update_fields=[name for name, _ in changes])
        report.updated.append(
            f"placement {_describe_placement(placement)}: " + "; ".join(t for _, t in changes)
        )


# Exporting


def export_app_config_data(application: Application) -> dict:
    """The application's configuration as the file's structure, from the database."""
    data: dict[str, Any] = {"application": application.slug}
    for path, name, kind in APPLICATION_FIELDS:
        value = getattr(application, name)
        if kind in ("positive_duration", "duration"):
            value = format_duration(value)
        elif kind == "minutes":
            value = format_duration(value * 60)
        section, _, key = path.rpartition(".")
        (data.setdefault(section, {}) if section else data)[key] = value

    placements = defaultdict(list)
    for placement in (
        Placement.objects.filter(service__application=application)
        .select_related("cluster")
        .order_by("id")
    ):
        placements[placement.service_id].append(placement)
    clusters = {p.cluster for group in placements.values() for p in group if p.cluster_id}
    data["clusters"] = {
        c.name: {"region": c.region, "arn": c.arn} for c in sorted(clusters, key=lambda c: c.name)
    }
    data["services"] = []
    for service in application.services.order_by("phase", "name"):
        item: dict[str, Any] = {
            "name": service.name,
            "process_type": service.process_type,
            "phase": service.phase,
        }
        if service.health_check_url:
            item["health_check_url"] = service.health_check_url
        item["placements"] = [_export_placement(p) for p in placements[service.id]]
        data["services"].append(item)
    return data


def _export_placement(placement: Placement) -> dict:
    if placement.kind == PlacementKind.LEGACY:
        return {"legacy_job": placement.legacy_job}
    item = {}
    if placement.cluster_id:
        item["cluster"] = placement.cluster.name
    item["ecs_service"] = placement.ecs_service_name
    item["container"] = placement.container_name
    return item


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)  # indent lists under their key


def export_app_config(application: Application) -> str:
    """The application's configuration file, as YAML, from what is in the database."""
    header = (
        f"# {application.slug}: Fat Controller application configuration (docs/app-config.md).\n"
        "# Load with: manage.py load_app_config FILE\n"
    )
    body = yaml.dump(
        export_app_config_data(application),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    return header + body
