"""An application's config file, from what the database holds.

export_app_config_data gives the file's structure (the API serves it as JSON) and
export_app_config the YAML: every application setting, the clusters its placements use, its
services by phase and name with their placements, and the migration plan's phases
(never their states, which people move). Parsed and applied, it changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import yaml

from clusters.models import Cluster, ClusterKind, MigrationPlan, Placement, PlacementKind
from deploys.models import Application

from . import docker_shape
from .schema import (
    APPLICATION_FIELDS,
    CHOICES,
    DOCKER_CONFIG_KEYS,
    DOCKER_DEFAULTS,
    DOCKER_DURATIONS,
    HEALTH_CHECK_DURATIONS,
    format_duration,
)

# Written only when it differs, so that files from before the key stay the same.
DEFAULT_RESERVED_MEMORY = Cluster._meta.get_field("reserved_memory_minimum").default


def export_app_config_data(application: Application) -> dict:
    """The application's configuration as the file's structure, from the database."""
    data: dict[str, Any] = {"application": application.slug}
    for path, name, kind in APPLICATION_FIELDS:
        value = getattr(application, name)
        if kind in CHOICES and value == CHOICES[kind][0]:
            continue  # the default, left out so that files written before it stay the same
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
        c.name: {"docker_host": c.docker_host}
        if c.kind == ClusterKind.DOCKER
        else {"region": c.region, "arn": c.arn}
        # Written only when set, so that files from before it stay the same.
        | ({"drain_disconnected": True} if c.drain_disconnected else {})
        | (
            {"reserved_memory_minimum": c.reserved_memory_minimum}
            if c.reserved_memory_minimum != DEFAULT_RESERVED_MEMORY
            else {}
        )
        for c in sorted(clusters, key=lambda c: c.name)
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
    plan = MigrationPlan.objects.filter(application=application).first()
    if plan is not None:
        data["migration"] = _export_plan(plan)
    return data


def _export_plan(plan: MigrationPlan) -> dict:
    """The plan's proof and phases in order; their states are people's to move, not the file's."""
    phases = []
    for phase in plan.phases.order_by("position"):
        services = phase.services.order_by("phase", "name").values_list("name", flat=True)
        phases.append({"name": phase.name, "services": list(services)})
    return {
        "proof": {"deploys": plan.proof_deploys, "hours": plan.proof_hours},
        "phases": phases,
    }


def _export_placement(placement: Placement) -> dict:
    if placement.kind == PlacementKind.LEGACY:
        item = {"legacy_job": placement.legacy_job}
        if placement.legacy_version:
            item["legacy_version"] = placement.legacy_version
        return item
    if placement.kind == PlacementKind.DOCKER:
        return _export_docker_placement(placement)
    item = {}
    if placement.cluster_id:
        item["cluster"] = placement.cluster.name
    item["ecs_service"] = placement.ecs_service_name
    item["container"] = placement.container_name
    return item


def _export_docker_placement(placement: Placement) -> dict:
    """The host and the config's keys that differ from their defaults, durations written."""
    item: dict[str, Any] = {"docker": placement.cluster.name}
    config = docker_shape.in_file_words(placement.docker_config)
    for key in DOCKER_CONFIG_KEYS:
        if key not in config or (key != "memory" and config[key] == DOCKER_DEFAULTS.get(key)):
            continue
        value = config[key]
        if key in DOCKER_DURATIONS:
            value = format_duration(value)
        elif key == "health_check" and value:
            value = {
                name: format_duration(part) if name in HEALTH_CHECK_DURATIONS else part
                for name, part in value.items()
            }
        item[key] = value
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
