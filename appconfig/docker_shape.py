"""A Docker placement's config in the file's words and in the target's.

The file says it the way people think of a rollout (docs/app-config.md): `health_check`, and
`max_surge` as the percent of replicas that may start beside the old ones (0-100). The
target (clusters/targets/docker_config.py), which Placement.docker_config is stored for,
says it the way the engine and ECS do: `healthcheck`, `max_surge` as maximumPercent
(100-200) and ports as {"8080/tcp": 8080}. One translation each way, so that a loaded file
is what the target runs and an exported one reads as it was written.
"""

from __future__ import annotations

from typing import Any


def stored(in_file: dict[str, Any]) -> dict[str, Any]:
    """The target's config from the file's (every key filled in)."""
    config = {key: value for key, value in in_file.items() if key != "health_check"}
    config["healthcheck"] = in_file.get("health_check")
    config["max_surge"] = 100 + in_file["max_surge"]
    config["ports"] = {
        (port if "/" in port else f"{port}/tcp"): int(port.split("/")[0])
        for port in in_file.get("ports") or []
    }
    return config


def in_file_words(config: dict[str, Any]) -> dict[str, Any]:
    """The file's words for a stored config (the inverse of `stored`)."""
    in_file = {key: value for key, value in config.items() if key != "healthcheck"}
    in_file["health_check"] = config.get("healthcheck")
    if "max_surge" in config:
        in_file["max_surge"] = config["max_surge"] - 100
    in_file["ports"] = [
        name[: -len("/tcp")] if name.endswith("/tcp") else name
        for name in (config.get("ports") or {})
    ]
    return in_file
