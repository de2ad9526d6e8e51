"""The reserved memory check of a Docker host (clusters/health/reserved_memory.py) against a
real engine: the host's memory less its running containers' hard limits, and containers with
no hard limit named."""

from clusters.health.reserved_memory import check_docker_reserved_memory
from clusters.health.watch import watch
from clusters.models import ClusterReport, ReportKind
from clusters.targets.docker import MIB, target_for_host
from clusters.targets.docker_replicas import PLACEMENT


def run(engine, image, name: str, **limits):
    """A container that is not Fat Controller's own (the fixture's label only tidies it up)."""
    return engine.containers.run(
        image,
        ["sleep", "300"],
        name=name,
        detach=True,
        network_mode="none",
        labels={PLACEMENT: "tidy-up"},
        **limits,
    )


def reports():
    return list(ClusterReport.objects.filter(kind=ReportKind.RESERVED_MEMORY).order_by("pk"))


def test_limits_that_leave_too_little_are_reported_once_and_closed_once(engine, image, placement):
    cluster = placement.cluster
    target = target_for_host(cluster.docker_host)
    hog = run(engine, image, "fc-test-hog", mem_limit="64m")
    memory = target.host_memory()
    assert memory.total == engine.info()["MemTotal"]
    assert memory.limits["fc-test-hog"] == 64 * MIB
    # A host this test cannot fill: ask for one MiB more than the limits leave.
    cluster.reserved_memory_minimum = memory.left // MIB + 1
    cluster.save()

    opened = [check_docker_reserved_memory(cluster, target.host_memory()) for _ in range(3)]
    assert [o.opened for o in opened] == [[cluster.name], [], []]
    (report,) = reports()
    assert report.subject == cluster.name and report.closed_at is None
    assert report.detail["limited"] == memory.limited // MIB
    assert report.detail["left"] == memory.left // MIB < report.detail["minimum"]
    assert f"leaving {memory.left // MIB} MiB for the Docker daemon" in report.message
    assert f"less than {cluster.reserved_memory_minimum} MiB" in report.message

    hog.remove(force=True)  # its 64 MiB are the daemon's again
    closed = [check_docker_reserved_memory(cluster, target.host_memory()) for _ in range(3)]
    assert [c.closed for c in closed] == [[cluster.name], [], []]
    (report,) = reports()
    assert report.closed_at is not None
    assert report.closed_why == f"the hard limits leave {memory.left // MIB + 64} MiB now"


def test_a_container_without_a_hard_limit_is_named_by_the_watch(engine, image, placement):
    cluster = placement.cluster
    loose = run(engine, image, "fc-test-no-limit")
    run(engine, image, "fc-test-limited", mem_limit="16m")

    watch(cluster)
    watch(cluster)
    (report,) = reports()
    assert report.detail["unlimited"] == ["fc-test-no-limit"]
    assert "1 running container has no hard memory limit" in report.message
    assert "(fc-test-no-limit)" in report.message
    assert "less than" not in report.message  # 256 MiB are left on this host

    loose.remove(force=True)
    watch(cluster)
    (report,) = reports()
    assert report.closed_at is not None
