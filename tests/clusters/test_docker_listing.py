"""The application page's reading of the engine's container list (DockerTarget.containers):
the health at the end of the engine's Status, and odd entries that are still shown."""

import pytest

from clusters.targets.docker import Container
from clusters.targets.docker_replicas import REPLICA, REVISION


def entry(status: str, **more):
    return {
        "Names": ["/fc-shop-web-1-abc-2"],
        "Labels": {REVISION: "abc", REPLICA: "2"},
        "State": "running",
        "Status": status,
        **more,
    }


@pytest.mark.parametrize(
    ("status", "health"),
    [
        ("Up 2 seconds (health: starting)", "starting"),
        ("Up 5 seconds (healthy)", "healthy"),
        ("Up 1 minute (unhealthy)", "unhealthy"),
        ("Up 3 hours", ""),
        ("Exited (137) 2 minutes ago", ""),
    ],
)
def test_the_health_is_read_from_the_end_of_the_status(status, health):
    listed = Container.listed(entry(status))

    assert listed.health == health
    assert (listed.name, listed.revision, listed.replica) == ("fc-shop-web-1-abc-2", "abc", 2)
    assert listed.status == status


def test_an_entry_with_no_labels_or_names_is_still_listed():
    listed = Container.listed({"Status": None, "Labels": None, "Names": None})

    assert (listed.name, listed.revision, listed.replica, listed.health) == ("", "", 0, "")
