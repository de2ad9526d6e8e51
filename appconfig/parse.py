"""Parse and validate an application config file: a valid AppConfig, or every problem found.

parse_app_config never touches the database: it checks each value against the file's rules
and the Application's field sizes, and raises ConfigError naming the path of every problem
(keys given twice, unknown keys with the nearest known one, values of the wrong kind). A URL
that carries credentials (lib.urls.has_credentials) is refused by an error that does not
repeat it. Advice that does not stop the file loading goes in the result's warnings.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

import yaml
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from builds.local import split_command
from clusters.models import (
    Cluster,
    ClusterKind,
    MigrationPhase,
    Placement,
    PlacementKind,
    ProcessType,
    Service,
)
from clusters.targets import docker_config
from deploys.models import Application
from lib.git import InvalidBranchName, validate_branch_name
from lib.urls import has_credentials

from . import docker_shape
from .errors import ConfigError
from .schema import (
    APPLICATION_FIELDS,
    BACK_TYPES,
    BACKENDS,
    BUILD_KEYS,
    CHOICES,
    CLUSTER_KEYS,
    DOCKER_CONFIG_KEYS,
    DOCKER_DEFAULTS,
    DOCKER_NETWORKS,
    ECS_PLACEMENT_KEYS,
    FRONT_TYPES,
    HEALTH_CHECK_DEFAULTS,
    HEALTH_CHECK_KEYS,
    LEGACY_PLACEMENT_KEYS,
    MAX_INTEGER,
    MIGRATION_KEYS,
    MIGRATION_PHASE_KEYS,
    PLACEMENT_KEYS,
    PROOF_KEYS,
    ROLLOUT_KEYS,
    SERVICE_KEYS,
    TOP_KEYS,
    AppConfig,
    ClusterConfig,
    MigrationConfig,
    MigrationPhaseConfig,
    PlacementConfig,
    ServiceConfig,
    format_duration,
    parse_duration,
)

_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d+")
_CLUSTER_ARN = re.compile(r"arn:aws[a-z-]*:ecs:([a-z0-9-]+):\d{12}:cluster/[A-Za-z0-9_-]+")
_SLUG = re.compile(r"[-a-zA-Z0-9_]+")
_DOCKER_HOST = re.compile(r"unix:///\S+|tcp://[A-Za-z0-9.:\[\]-]+:\d{1,5}")
_MEMORY = re.compile(r"(\d+)([bkmg])", re.IGNORECASE)
_MEMORY_UNITS = {"b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
_MIN_MEMORY = 6 * 2**20  # the engine refuses a smaller limit
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT = re.compile(r"(\d{1,5})(/(tcp|udp))?")
_HEALTH_TEST_KINDS = ("CMD", "CMD-SHELL", "NONE")
# Said, never the URL itself, when a URL in the file carries credentials (lib.urls' rule).
_CREDENTIALS = "must not carry credentials (a user, token or password before the host)"


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
        self.cluster_kinds: dict[str, str] = {}  # the kind of each cluster that parsed

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
            if remote is not None and has_credentials(remote):
                self.error(path, f"{_CREDENTIALS}: git uses the worker's SSH keys")
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
        if kind in CHOICES:
            return self.choice(value, path, CHOICES[kind])
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
        if "docker_host" in known:
            return self.docker_host(name, known, path)
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
        drain = None
        if "drain_disconnected" in known:
            drain = known["drain_disconnected"]
            if not isinstance(drain, bool):
                self.error(
                    _join(path, "drain_disconnected"),
                    f"must be true or false, not {_describe_value(drain)}",
                )
                drain = None
        return ClusterConfig(
            name=name,
            region=region,
            arn=arn,
            drain_disconnected=drain,
            reserved_memory_minimum=self.reserved_memory_minimum(known, path),
        )

    def reserved_memory_minimum(self, known, path) -> int | None:
        """MiB an instance (or a Docker host) must keep for the agent and the Docker daemon."""
        if "reserved_memory_minimum" not in known:
            return None
        return self.integer(
            known["reserved_memory_minimum"], _join(path, "reserved_memory_minimum"), minimum=0
        )

    def docker_host(self, name, known, path) -> ClusterConfig | None:
        """A Docker host: its engine's address only; TLS settings come from the environment."""
        others = [key for key in ("region", "arn", "drain_disconnected") if key in known]
        if others:
            self.error(
                path,
                "a Docker host takes only docker_host and reserved_memory_minimum, not "
                + ", ".join(others),
            )
        key_path = _join(path, "docker_host")
        max_length = Cluster._meta.get_field("docker_host").max_length
        host = self.text(known["docker_host"], key_path, max_length=max_length)
        if host is None:
            return None
        if has_credentials(host):
            self.error(
                key_path,
                f"{_CREDENTIALS}: TLS certificates come from the environment "
                "(FC_DOCKER_TLS_CA, FC_DOCKER_TLS_CERT, FC_DOCKER_TLS_KEY)",
            )
            return None
        if not _DOCKER_HOST.fullmatch(host):
            self.error(
                key_path,
                f"{host!r} is not a Docker engine's address: write unix:///path/to/docker.sock "
                "or tcp://host:port",
            )
            return None
        minimum = self.reserved_memory_minimum(known, path)
        if others:
            return None
        return ClusterConfig(name=name, docker_host=host, reserved_memory_minimum=minimum)

    def placement(self, value, path) -> PlacementConfig | None:
        known = self.mapping(value, path, PLACEMENT_KEYS)
        if known is None:
            return None
        if "docker" in known:
            return self.docker_placement(known, path)
        stray = [key for key in DOCKER_CONFIG_KEYS if key in known]
        if stray:
            for key in stray:
                self.error(_join(path, key), "is for a Docker placement: give it beside docker")
            return None
        if "legacy_job" in known:
            others = [key for key in ECS_PLACEMENT_KEYS if key in known]
            if others:
                self.error(
                    path,
                    "a legacy placement takes only legacy_job and legacy_version, "
                    f"not {', '.join(others)}",
                )
            job = self.text(known["legacy_job"], _join(path, "legacy_job"), max_length=255)
            version = ""
            if "legacy_version" in known:
                version = self.text(
                    known["legacy_version"],
                    _join(path, "legacy_version"),
                    max_length=Placement._meta.get_field("legacy_version").max_length,
                    optional=True,
                )
            if others or job is None or version is None:
                return None
            return PlacementConfig(
                kind=PlacementKind.LEGACY.value, legacy_job=job, legacy_version=version
            )
        if "legacy_version" in known:
            self.error(
                _join(path, "legacy_version"),
                "is for a legacy placement: give it beside a legacy_job",
            )
            return None
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
            elif self.cluster_kinds.get(cluster) == ClusterKind.DOCKER:
                self.error(
                    _join(path, "cluster"),
                    f"{cluster!r} is a Docker host (it has a docker_host): an ECS placement "
                    "names an ECS cluster (write docker: for a Docker placement)",
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

    def docker_placement(self, known, path) -> PlacementConfig | None:
        """A service's containers on a Docker host, with every key of its config filled in."""
        ok = True
        others = [key for key in ECS_PLACEMENT_KEYS + LEGACY_PLACEMENT_KEYS if key in known]
        if others:
            self.error(
                path,
                "a Docker placement takes docker and its containers' settings, "
                f"not {', '.join(others)}",
            )
            ok = False
        host = self.text(known["docker"], _join(path, "docker"), max_length=200)
        if host is not None and host not in self.declared_clusters:
            names = [c for c in self.declared_clusters if isinstance(c, str)]
            self.error(
                _join(path, "docker"),
                f"no Docker host {host!r} under clusters" + _did_you_mean(host, names),
            )
            host = None
        elif (
            host is not None
            and self.cluster_kinds.get(host, ClusterKind.DOCKER) != ClusterKind.DOCKER
        ):
            self.error(
                _join(path, "docker"),
                f"{host!r} is an ECS cluster: a Docker placement names a Docker host "
                "(a cluster with a docker_host)",
            )
            host = None
        config = dict(DOCKER_DEFAULTS)
        if "memory" not in known:
            self.error(
                _join(path, "memory"),
                "a Docker placement needs a hard memory limit (like 64m): without one a single "
                "container can take the host down",
            )
            ok = False
        for key in DOCKER_CONFIG_KEYS:
            if key in known:
                value = self.docker_value(key, known[key], _join(path, key))
                if value is None:
                    ok = False
                else:
                    config[key] = value
        if ok and config["max_surge"] == 0 and config["min_healthy"] == 100:
            self.error(
                path,
                "max_surge 0 and min_healthy 100 leave a rollout no room: it may neither start "
                "a new container first nor stop an old one",
            )
            ok = False
        if not ok or host is None:
            return None
        # What the target will run: checked by the target's own rules now, so a file it
        # could not run is refused before anything is saved.
        target_config = docker_shape.stored(config)
        try:
            docker_config.normalize(target_config, container=path)
        except docker_config.ConfigError as exc:
            self.error(path, str(exc))
            return None
        return PlacementConfig(
            kind=PlacementKind.DOCKER.value, cluster=host, docker_config=target_config
        )

    def docker_value(self, key, value, path):
        """One key of a Docker placement's config, as stored; None (and an error) if bad."""
        if key == "replicas":
            return self.integer(value, path, minimum=1)
        if key in ("max_surge", "min_healthy"):
            percent = self.integer(value, path, minimum=0)
            if percent is not None and percent > 100:
                self.error(path, f"is a percent of replicas, from 0 to 100, not {percent}")
                return None
            return percent
        if key in ("stop_timeout", "grace"):
            return self.duration(value, path)
        if key == "memory":
            return self.memory(value, path)
        if key == "command":
            return self.string_list(value, path, "the command to run, as a list of arguments")
        if key == "env":
            return self.environment(value, path)
        if key == "ports":
            return self.ports(value, path)
        if key == "health_check":
            return self.health_check(value, path)
        if key == "network":
            if value not in DOCKER_NETWORKS:
                self.error(
                    path,
                    f"{_describe_value(value)} is not a network: bridge (Docker's own), host "
                    "(the host's) or none",
                )
                return None
            return value
        raise AssertionError(key)

    def memory(self, value, path) -> str | None:
        match = _MEMORY.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            self.error(
                path,
                f"{_describe_value(value)} is not a memory size: write a whole number with its "
                "unit, b, k, m or g (like 64m)",
            )
            return None
        number, unit = int(match.group(1)), match.group(2).lower()
        if number * _MEMORY_UNITS[unit] < _MIN_MEMORY:
            self.error(path, f"must be at least 6m (the engine's smallest limit), not {value}")
            return None
        return f"{number}{unit}"

    def string_list(self, value, path, what) -> list[str] | None:
        if (
            not isinstance(value, list)
            or not value
            or not all(isinstance(item, str) and item for item in value)
        ):
            self.error(
                path, f"must be {what}: a list of non-empty strings, not {_describe_value(value)}"
            )
            return None
        return list(value)

    def environment(self, value, path) -> dict[str, str] | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping of names to values, not {_describe_value(value)}")
            return None
        environment = {}
        for name, item in value.items():
            item_path = _join(path, str(name))
            if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
                self.error(item_path, "is not an environment variable's name")
            elif isinstance(item, bool) or not isinstance(item, str | int):
                self.error(
                    item_path, f"must be a string or a whole number, not {_describe_value(item)}"
                )
            else:
                environment[name] = str(item)
        return environment if len(environment) == len(value) else None

    def ports(self, value, path) -> list[str] | None:
        if not isinstance(value, list):
            self.error(path, f"must be a list of ports, not {_describe_value(value)}")
            return None
        ports = []
        for n, item in enumerate(value):
            text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            match = _PORT.fullmatch(text) if isinstance(text, str) else None
            if match is None or not 1 <= int(match.group(1)) <= 65535:
                self.error(
                    f"{path}[{n}]",
                    f"{_describe_value(item)} is not a port: write 8080 or 8080/udp",
                )
            else:
                ports.append(text)
        return ports if len(ports) == len(value) else None

    def health_check(self, value, path) -> dict | None:
        known = self.mapping(value, path, HEALTH_CHECK_KEYS, required=("test",))
        if known is None or "test" not in known:
            return None
        check = {"test": None, **HEALTH_CHECK_DEFAULTS}
        ok = True
        test = self.string_list(known["test"], _join(path, "test"), "the check's command")
        if test is not None and test[0] not in _HEALTH_TEST_KINDS:
            self.error(
                _join(path, "test"),
                f"starts with {', '.join(_HEALTH_TEST_KINDS)}, not {test[0]!r} "
                '(like ["CMD", "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"])',
            )
            test = None
        check["test"] = test
        ok = test is not None
        for key in ("interval", "timeout", "start_period"):
            if key in known:
                seconds = self.duration(
                    known[key], _join(path, key), positive=key != "start_period"
                )
                ok = ok and seconds is not None
                check[key] = seconds
        if "retries" in known:
            check["retries"] = self.integer(known["retries"], _join(path, "retries"), minimum=1)
            ok = ok and check["retries"] is not None
        return check if ok else None

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
            if health_check_url and has_credentials(health_check_url):
                self.error(
                    _join(path, "health_check_url"),
                    f"{_CREDENTIALS}: the file is no place for a secret",
                )
                health_check_url = None
            elif health_check_url:
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

    def migration(self, value, path, services: dict[str, ServiceConfig]) -> MigrationConfig | None:
        """The plan's phases, in order; services is every service the file declares by name
        (None for one that did not parse, so it is known but not checked again)."""
        known = self.mapping(value, path, MIGRATION_KEYS, required=("phases",))
        if known is None:
            return None
        plan = MigrationConfig()
        ok = True
        if "proof" in known:
            proof = self.mapping(known["proof"], _join(path, "proof"), PROOF_KEYS)
            if proof is None:
                ok = False
            for key, attribute in (("deploys", "proof_deploys"), ("hours", "proof_hours")):
                if proof and key in proof:
                    number = self.integer(proof[key], f"{path}.proof.{key}", minimum=0)
                    if number is None:
                        ok = False
                    else:
                        setattr(plan, attribute, number)
        items = known.get("phases")
        if "phases" not in known:
            return None
        if not isinstance(items, list):
            self.error(_join(path, "phases"), f"must be a list, not {_describe_value(items)}")
            return None
        if not items:
            self.error(
                _join(path, "phases"),
                "a plan needs at least one phase (leave migration out for no plan)",
            )
            return None
        names: dict[str, str] = {}
        placed: dict[str, str] = {}  # service -> the phase that has it
        max_length = MigrationPhase._meta.get_field("name").max_length
        for n, item in enumerate(items):
            phase_path = f"{path}.phases[{n}]"
            phase = self.mapping(
                item, phase_path, MIGRATION_PHASE_KEYS, required=MIGRATION_PHASE_KEYS
            )
            if phase is None or not all(key in phase for key in MIGRATION_PHASE_KEYS):
                ok = False
                continue
            name = self.text(phase["name"], _join(phase_path, "name"), max_length=max_length)
            if name is not None and name in names:
                self.error(
                    _join(phase_path, "name"), f"{name!r} is already the name of {names[name]}"
                )
                name = None
            if name is not None:
                names[name] = phase_path
            members = self.phase_services(
                phase["services"], _join(phase_path, "services"), name, services, placed
            )
            if name is None or members is None:
                ok = False
                continue
            plan.phases.append(MigrationPhaseConfig(name=name, services=members))
        return plan if ok else None

    def phase_services(self, value, path, phase_name, services, placed) -> tuple | None:
        if not isinstance(value, list):
            self.error(path, f"must be a list of service names, not {_describe_value(value)}")
            return None
        if not value:
            self.error(path, "a phase needs at least one service")
            return None
        members = []
        for m, item in enumerate(value):
            item_path = f"{path}[{m}]"
            name = self.text(item, item_path, max_length=200)
            if name is None:
                continue
            if name not in services:
                self.error(
                    item_path,
                    f"no service {name!r} under services" + _did_you_mean(name, services),
                )
                continue
            if name in placed:
                self.error(item_path, f"{name!r} is already in {placed[name]}: one phase a service")
                continue
            placed[name] = f"phase {phase_name!r}" if phase_name else path
            service = services[name]
            if service is not None:
                kinds = {p.kind for p in service.placements}
                missing = [
                    f"no {word} placement"
                    for kind, word in ((PlacementKind.LEGACY, "legacy"), (PlacementKind.ECS, "ECS"))
                    if kind not in kinds
                ]
                if missing:
                    self.error(
                        item_path,
                        f"service {name!r} has {' and '.join(missing)}: a service in the plan "
                        "moves from its legacy job to ECS, so it needs both a legacy placement "
                        "and an ECS one",
                    )
                    continue
            members.append(name)
        return tuple(members) if len(members) == len(value) else None


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
            parser.cluster_kinds[name] = cluster.kind

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
        hosts: dict[str, str] = {}
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
            if placement.kind == PlacementKind.DOCKER:
                if placement.cluster in hosts:
                    parser.error(
                        _join(path, "docker"),
                        f"{placement.cluster!r} is already a host of this service, in "
                        f"{hosts[placement.cluster]}: give it more replicas instead",
                    )
                hosts.setdefault(placement.cluster, path)
                continue
            target = (placement.cluster, placement.ecs_service)
            if target in ecs_targets:
                parser.error(
                    path, f"{placement.describe()} is already placed by {ecs_targets[target]}"
                )
            ecs_targets.setdefault(target, path)

    migration = None
    if "migration" in top:
        # Every service the file names, parsed or not, so a bad service is not reported twice.
        declared: dict[str, ServiceConfig | None] = {
            item["name"]: None
            for item in raw_services
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        }
        declared.update((s.name, s) for s in services)
        migration = parser.migration(top["migration"], "migration", declared)

    if parser.errors:
        raise ConfigError(parser.errors)

    warnings = _phase_warnings(services)
    warnings += parser.warnings
    warnings += [
        f"clusters.{name}: not used by any placement (it is created, but export leaves it out)"
        for name in clusters
        if name not in used_clusters
    ]
    return AppConfig(
        slug=slug,
        clusters=clusters,
        services=services,
        migration=migration,
        warnings=warnings,
        **values,
    )


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
