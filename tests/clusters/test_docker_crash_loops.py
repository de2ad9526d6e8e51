"""A real crash loop on a Docker host (clusters/health/crash_loops.py): two containers of one
service are OOM-killed by the kernel, and the check reports it once and restores the
revision that ran before, once."""

import time

from clusters.health.crash_loops import check_crash_loops, kills_on
from clusters.models import ClusterReport, ReportKind
from clusters.targets.base import Progress
from clusters.targets.docker import target_for

from .docker_world import containers, web
from .releases import shipped
from .test_docker_target import deploy

# Runs (and counts healthy after its grace) until told to leak, then fills its memory.
LEAKY = {
    "replicas": 2,
    "command": [
        "sh",
        "-c",
        "while [ ! -f /www/leak ]; do sleep 0.1; done; x=a; while true; do x=$x$x; done",
    ],
    "healthcheck": None,
    "memory": "16m",
    "grace": 0.5,
}


def until(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, f"not so after {timeout} s"
        time.sleep(0.1)
    return found


def test_two_containers_oom_killed_are_a_loop_restored_once(engine, image, placement):
    placement.docker_config = web("1", replicas=2)
    placement.save()
    seen, _ = deploy(placement, image)
    assert seen.progress is Progress.OUT
    placement.docker_config = {**web("2"), **LEAKY}
    placement.save()
    seen, ledger = deploy(placement, image)
    assert seen.progress is Progress.OUT
    good, leaky = ledger.revision_before, ledger.revision_made
    shipped(placement, good, leaky, detail=ledger.detail)
    cluster = placement.cluster

    first, second = containers(engine, placement)
    first.exec_run(["sh", "-c", ": > /www/leak"])
    until(lambda: len(kills_on(cluster)) == 1)
    assert check_crash_loops(cluster, kills_on(cluster)).opened == []  # one is not a loop

    second.exec_run(["sh", "-c", ": > /www/leak"])
    until(lambda: len(kills_on(cluster)) == 2)
    checked = check_crash_loops(cluster, kills_on(cluster))

    (report,) = ClusterReport.objects.filter(kind=ReportKind.CRASH_LOOP)
    assert checked.opened == ["shop/web"]
    assert report.detail["hosts"] == sorted([first.name, second.name])
    assert report.message.startswith(f"shop/web at {leaky} was OOM-killed on 2 containers")
    if report.detail["action"] == "restoring":  # a busy machine: the next check carries on
        until(lambda: check_crash_loops(cluster, kills_on(cluster)) is not None and _done())
    report.refresh_from_db()
    assert report.detail["action"] == "restored", report.detail
    target = target_for(placement)
    running = [r for r in target.replicas(placement) if r.status == "running"]
    assert [r.revision for r in running] == [good, good]  # the revision before it, 2 again

    for _ in range(3):  # however often it runs: nothing more
        check_crash_loops(cluster, kills_on(cluster))
    (again,) = ClusterReport.objects.filter(kind=ReportKind.CRASH_LOOP)
    assert again.pk == report.pk and again.closed_at is None
    assert {c.id for c in containers(engine, placement)} == {r.container.id for r in running}


def _done() -> bool:
    report = ClusterReport.objects.get(kind=ReportKind.CRASH_LOOP)
    return report.detail["action"] != "restoring"
