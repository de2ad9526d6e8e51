"""Config files for the tests: the example, a small valid one, and edits of either."""

import copy
from pathlib import Path

import pytest
import yaml

from appconfig.errors import ConfigError
from appconfig.parse import parse_app_config
from clusters.models import Cluster, Placement, Service
from deploys.models import Application

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "demo-shop.fatcontroller.yml"

# A small valid file, which each test case changes.
BASE = {
    "application": "demo-shop",
    "build": {"backend": "local", "command": "sh build.sh", "timeout": "30m"},
    "rollout": {"soak": "60s"},
    "clusters": {"demo": {"region": "us-east-1"}},
    "services": [
        {
            "name": "worker",
            "process_type": "worker",
            "phase": 1,
            "placements": [
                {"cluster": "demo", "ecs_service": "demo-shop-worker", "container": "app"}
            ],
        },
        {
            "name": "web",
            "process_type": "web",
            "phase": 2,
            "placements": [{"cluster": "demo", "ecs_service": "demo-shop-web", "container": "app"}],
        },
    ],
}


def changed(change) -> str:
    data = copy.deepcopy(BASE)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_app_config(text)
    return caught.value.errors


def example_text() -> str:
    return EXAMPLE.read_text()


def edited_example(edit) -> str:
    data = yaml.safe_load(example_text())
    edit(data)
    return yaml.safe_dump(data, sort_keys=False)


def db_state(application) -> dict:
    """Everything a file can set, as rows, to show that nothing changed."""
    application.refresh_from_db()
    return {
        "application": {f.name: getattr(application, f.name) for f in Application._meta.fields},
        "clusters": sorted(Cluster.objects.values_list("name", "region", "arn")),
        "services": sorted(
            Service.objects.values_list("id", "application_id", "name", "process_type", "phase")
        ),
        "placements": sorted(
            Placement.objects.values_list(
                "id", "service_id", "kind", "cluster_id", "ecs_service_name", "container_name"
            )
        ),
    }


def set_in(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def add_plan(data) -> None:
    """BASE's services with a legacy job each, and a plan that moves them one at a time."""
    data["services"][0]["placements"].append({"legacy_job": "old-worker", "legacy_version": "v41"})
    data["services"][1]["placements"].append({"legacy_job": "old-web"})
    data["migration"] = {
        "proof": {"deploys": 2, "hours": 1},
        "phases": [
            {"name": "workers", "services": ["worker"]},
            {"name": "webs", "services": ["web"]},
        ],
    }


def with_plan(change=lambda data: None) -> str:
    """BASE with add_plan's plan, then change made to it."""
    return changed(lambda data: (add_plan(data), change(data)))
