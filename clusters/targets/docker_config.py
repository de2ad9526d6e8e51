"""A Docker placement's containers, as the config file gives them (Placement.docker_config).

    replicas      how many containers (1 or more; default 1)
    command       the command, a list of strings (default: the image's)
    env           environment variables, a dict of strings
    network       "bridge" (Docker's default), "host" or "none"
    ports         {"8080/tcp": 8080}: container port -> host port (None: any), bridge only
    healthcheck   {test: ["CMD", ...] or ["CMD-SHELL", "..."], interval, timeout,
                   start_period (seconds), retries}; default: the image's own HEALTHCHECK
    memory        the hard memory limit: 64m, 1g, or bytes (required; swap is not allowed)
    stop_timeout  seconds between the stop signal and the kill (default 10)
    max_surge     like ECS's maximumPercent: how many of the replicas may run beside the old
                  ones while replacing (100-200; default 200, all at once)
    min_healthy   like ECS's minimumHealthyPercent: how many must stay healthy (0-100;
                  default 100)
    grace         seconds a container with no health check must run to count as healthy
                  (default 5)

`normalize` checks a config and returns it complete and in one shape; it is what a
revision is made of, so the same image and config are always the same revision. The config
file can call it to refuse a bad config before anything is saved.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

DEFAULTS: dict[str, Any] = {
    "replicas": 1,
    "command": None,
    "env": {},
    "network": "bridge",
    "ports": {},
    "healthcheck": None,
    "stop_timeout": 10,
    "max_surge": 200,
    "min_healthy": 100,
    "grace": 5,
}
KEYS = {*DEFAULTS, "memory"}
NETWORKS = {"bridge", "host", "none"}
HEALTH_KEYS = {"test", "interval", "timeout", "start_period", "retries"}
MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses less
MEMORY = re.compile(r"^(?P<number>\d+)\s*(?P<unit>[bkmg]?)b?$", re.IGNORECASE)
UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class ConfigError(ValueError):
    """The config cannot run: the message says what to change, in plain words."""


def normalize(config: dict[str, Any] | None, *, container: str) -> dict[str, Any]:
    """The config checked and complete; ConfigError naming `container` when it cannot run."""
    config = dict(config or {})
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise ConfigError(
            f"{container}'s docker config has unknown keys: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KEYS))})"
        )
    if config.get("memory") in (None, "", 0):
        raise ConfigError(
            f"{container} has no hard memory limit: set memory for {container} in the config file"
        )
    merged = {**DEFAULTS, **config}
    out: dict[str, Any] = {
        "replicas": _whole(merged["replicas"], "replicas", container, low=1),
        "command": _command(merged["command"], container),
        "env": _env(merged["env"], container),
        "network": _network(merged["network"], container),
        "ports": _ports(merged["ports"], container),
        "healthcheck": _healthcheck(merged["healthcheck"], container),
        "memory": _memory(merged["memory"], container),
        "stop_timeout": _whole(merged["stop_timeout"], "stop_timeout", container, low=0),
        "max_surge": _whole(merged["max_surge"], "max_surge", container, low=100, high=200),
        "min_healthy": _whole(merged["min_healthy"], "min_healthy", container, low=0, high=100),
        "grace": _seconds(merged["grace"], "grace", container, low=0),
    }
    if out["max_surge"] == 100 and out["min_healthy"] == 100:
        raise ConfigError(
            f"{container}: max_surge 100 with min_healthy 100 leaves no room to replace a "
            "container: raise max_surge or lower min_healthy"
        )
    if out["ports"] and out["network"] != "bridge":
        raise ConfigError(f"{container}: ports are published on the bridge network only")
    return out


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def revision_of(image: str, config: dict[str, Any]) -> str:
    """A short stable name for (image, normalized config): the same pair, the same revision."""
    return hashlib.sha256(canonical({"image": image, "config": config}).encode()).hexdigest()[:12]


def healthcheck_for_engine(healthcheck: dict[str, Any] | None) -> dict[str, Any] | None:
    """The engine's form: durations in nanoseconds."""
    if healthcheck is None:
        return None
    ns = {k: int(healthcheck[k] * 1e9) for k in ("interval", "timeout", "start_period")}
    return {"test": healthcheck["test"], "retries": healthcheck["retries"], **ns}


# ------------------------------------------------------------------------------ checks


def _whole(value, key, container, *, low, high=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{container}: {key} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        span = f"{low} to {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{container}: {key} must be {span}, not {value}")
    return value


def _seconds(value, key, container, *, low, above=False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{container}: {key} must be a number of seconds, not {value!r}")
    if value < low or (above and value == low):
        raise ConfigError(f"{container}: {key} must be {'above' if above else 'at least'} {low} s")
    return float(value)


def _command(value, container) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{container}: command must be a list of strings")
    return value


def _env(value, container) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConfigError(f"{container}: env must map names to strings")
    return dict(sorted(value.items()))


def _network(value, container) -> str:
    if value not in NETWORKS:
        raise ConfigError(f"{container}: network must be one of {', '.join(sorted(NETWORKS))}")
    return value


def _ports(value, container) -> dict[str, int | None]:
    if not isinstance(value, dict):
        raise ConfigError(f"{container}: ports must map container ports to host ports")
    ports = {}
    for inside, outside in value.items():
        name = str(inside) if "/" in str(inside) else f"{inside}/tcp"
        if outside is not None and (isinstance(outside, bool) or not isinstance(outside, int)):
            raise ConfigError(f"{container}: the host port of {name} must be a number or null")
        ports[name] = outside
    return dict(sorted(ports.items()))


def _healthcheck(value, container) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "test" not in value:
        raise ConfigError(f"{container}: healthcheck needs a test, like ['CMD', 'wget', ...]")
    unknown = sorted(set(value) - HEALTH_KEYS)
    if unknown:
        raise ConfigError(f"{container}: healthcheck has unknown keys: {', '.join(unknown)}")
    test = value["test"]
    if (
        not isinstance(test, list)
        or not test
        or test[0] not in ("CMD", "CMD-SHELL", "NONE")
        or not all(isinstance(t, str) for t in test)
    ):
        raise ConfigError(
            f"{container}: healthcheck test must be a list starting with CMD, CMD-SHELL or NONE"
        )
    return {
        "test": test,
        # The engine's floor is a millisecond.
        "interval": _seconds(value.get("interval", 5), "interval", container, low=0.001),
        "timeout": _seconds(value.get("timeout", 5), "timeout", container, low=0.001),
        "start_period": _seconds(value.get("start_period", 0), "start_period", container, low=0),
        "retries": _whole(value.get("retries", 3), "retries", container, low=1),
    }


def _memory(value, container) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        match = MEMORY.match(str(value).strip())
        if not match:
            raise ConfigError(
                f"{container}: memory must be like 64m, 1g or a number of bytes, not {value!r}"
            )
        number = int(match["number"]) * UNITS[match["unit"].lower()]
    if number < MIN_MEMORY:
        raise ConfigError(f"{container}: memory must be at least 6m (Docker's floor)")
    return number
