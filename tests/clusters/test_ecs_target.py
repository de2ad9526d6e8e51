"""The ECS adapter: real boto3 against moto with the ECS deployment simulator.

Calls are counted by operation on the adapter's own (cached) client, through botocore's
before-parameter-build events: one per API call (retries aside), with its parameters.
"""

from collections import Counter

import boto3
import pytest

from clusters.models import Cluster, Placement, ProcessType, Service
from clusters.targets import ecs as ecs_module
from clusters.targets import target_for
from clusters.targets.base import Observation, Progress, TargetRefused, Watch
from deploys.models import Application
from devtools.ecs_simulator import create_service
from tests.clusters.ledgers import Ledger

REGION = "us-east-1"
CLUSTER = "demo"
IMAGE = "registry.example.com/shop"


@pytest.fixture
def ecs(simulator):
    """A client of the test's own, so its calls are not counted with the adapter's."""
    client = boto3.client("ecs", region_name=REGION)
    client.create_cluster(clusterName=CLUSTER)
    return client


@pytest.fixture
def cluster(db):
    return Cluster.objects.create(name=CLUSTER, region=REGION)


@pytest.fixture
def app(db):
    return Application.objects.create(
        slug="shop", name="Shop", git_remote_url="/nowhere.git", default_branch="main"
    )


@pytest.fixture
def calls():
    """ECS calls made through the adapter's client, by operation: a Counter, and each
    call's parameters in `calls.params`."""
    counted = Counter()
    counted.params = []

    def count(model, params, **kwargs):
        counted[model.name] += 1
        counted.params.append((model.name, params))

    made = ecs_module.client("ecs", REGION)
    made.meta.events.register("before-parameter-build.ecs", count)
    yield counted
    made.meta.events.unregister("before-parameter-build.ecs", count)


def make_services(ecs, app, cluster, names, *, desired=1) -> list[Placement]:
    placements = []
    for name in names:
        create_service(
            ecs, cluster=CLUSTER, name=name, image=f"{IMAGE}:base", desired_count=desired
        )
        service = Service.objects.create(application=app, name=name, process_type=ProcessType.WEB)
        placements.append(
            Placement.objects.create(
                service=service, cluster=cluster, ecs_service_name=name, container_name="app"
            )
        )
    return placements


def start_all(placements, image) -> list[Watch]:
    watches = []
    for placement in placements:
        ledger = Ledger()
        handle = target_for(placement).start(placement, image, ledger)
        watches.append(Watch(placement, handle, ledger.revision_made))
    return watches


def observe(watches, calls) -> tuple[list[Observation], Counter]:
    calls.clear()
    calls.params.clear()
    observations = target_for(watches[0].placement).observe(watches)
    return observations, Counter(calls)


def test_forty_services_cost_four_describes_and_one_scan_when_it_is_due(
    simulator, ecs, app, cluster, calls, settings
):
    settings.FC_ECS_STOPPED_TASKS_EVERY = 10_000
    placements = make_services(ecs, app, cluster, [f"svc-{n:02}" for n in range(40)])
    simulator.advance(5)
    watches = start_all(placements, f"{IMAGE}:new")

    # The first look at a cluster lists its stopped tasks: none has stopped yet.
    observations, first = observe(watches, calls)
    assert first == {"DescribeServices": 4, "ListTasks": 1}
    assert {o.progress for o in observations} == {Progress.PROGRESSING}
    assert all(o.error is None for o in observations)

    # Nothing failed, nothing is about to be called out, the cadence has not elapsed.
    _, second = observe(watches, calls)
    assert second == {"DescribeServices": 4}

    # All out: about to be called out, so the stopped tasks (the 40 old ones) are looked at.
    simulator.advance(10)
    observations, third = observe(watches, calls)
    assert third == {"DescribeServices": 4, "ListTasks": 1, "DescribeTasks": 1}
    assert sum(third.values()) <= 6
    assert [(o.progress, o.running, o.desired) for o in observations] == [(Progress.OUT, 1, 1)] * 40

    # Watched through the soak, out and at full strength: no scan again.
    settled = [Watch(w.placement, w.handle, w.revision, settled=True) for w in watches]
    observations, fourth = observe(settled, calls)
    assert fourth == {"DescribeServices": 4}
    assert {o.progress for o in observations} == {Progress.OUT}


def test_four_services_are_described_in_one_call(simulator, ecs, app, cluster, calls):
    placements = make_services(ecs, app, cluster, ["a", "b", "c", "d"])
    watches = start_all(placements, f"{IMAGE}:new")

    observations, counted = observe(watches, calls)

    assert counted["DescribeServices"] == 1
    described = [p for op, p in calls.params if op == "DescribeServices"]
    assert sorted(described[0]["services"]) == ["a", "b", "c", "d"]
    assert len(observations) == 4


def test_failed_tasks_bring_a_scan_and_their_reason_and_each_is_described_once(
    simulator, ecs, app, cluster, calls, settings
):
    settings.FC_ECS_STOPPED_TASKS_EVERY = 10_000
    simulator.behave_by_image(":oom", "oom")
    placements = make_services(ecs, app, cluster, ["crashing"], desired=2)
    simulator.advance(5)
    watches = start_all(placements, f"{IMAGE}:oom")
    observe(watches, calls)  # the first look at the cluster, which always scans

    simulator.advance(3)  # the new tasks start and run out of memory
    (crashing,), counted = observe(watches, calls)

    assert counted["ListTasks"] == 1
    assert counted["DescribeTasks"] == 1
    assert crashing.progress == Progress.FAILED
    assert "OutOfMemoryError" in crashing.reason
    assert "crashing:2 stopped" in crashing.reason
    (first_described,) = [p["tasks"] for op, p in calls.params if op == "DescribeTasks"]
    assert first_described

    # Still failing, so still scanned; nothing new stopped, so nothing is described again.
    _, counted = observe(watches, calls)
    assert counted == {"DescribeServices": 1, "ListTasks": 1}

    simulator.advance(3)  # the replacements fail too
    observations, counted = observe(watches, calls)
    assert counted["DescribeTasks"] == 1
    (again,) = [p["tasks"] for op, p in calls.params if op == "DescribeTasks"]
    assert again and not set(again) & set(first_described)
    assert observations[0].progress == Progress.FAILED


def test_a_service_named_by_arn_is_found_and_a_missing_one_is_refused_alone(
    simulator, ecs, app, cluster, calls
):
    by_name, by_arn = make_services(ecs, app, cluster, ["web", "worker"], desired=2)
    arn = ecs.describe_services(cluster=CLUSTER, services=["worker"])["services"][0]["serviceArn"]
    Placement.objects.filter(pk=by_arn.pk).update(ecs_service_name=arn)
    by_arn.refresh_from_db()
    gone = Placement.objects.create(
        service=Service.objects.create(application=app, name="gone", process_type="worker"),
        cluster=cluster,
        ecs_service_name="gone",
        container_name="app",
    )
    simulator.advance(5)
    target = target_for(by_arn)
    assert target.current(by_arn).endswith("task-definition/worker:1")

    watches = start_all([by_name, by_arn], f"{IMAGE}:new")
    watches.insert(1, Watch(gone, "ecs-svc/0", "arn:aws:ecs:task-definition/gone:2"))
    simulator.advance(5)
    observations = target.observe(watches)

    web, missing, worker = observations
    assert (web.error, web.progress, web.running, web.desired) == (None, Progress.OUT, 2, 2)
    assert (worker.error, worker.progress, worker.running) == (None, Progress.OUT, 2)
    assert isinstance(missing.error, TargetRefused)
    assert "gone" in str(missing.error)
    assert missing.running is None
    with pytest.raises(TargetRefused):
        target.current(gone)


def test_start_and_restore_adopt_what_a_dead_worker_already_sent(
    simulator, ecs, app, cluster, calls
):
    (placement,) = make_services(ecs, app, cluster, ["web"], desired=2)
    simulator.advance(5)
    target = target_for(placement)
    ledger = Ledger()

    handle = target.start(placement, f"{IMAGE}:new", ledger)
    ledger.start_handle = ""  # the worker died after UpdateService, before writing it down
    again = target.start(placement, f"{IMAGE}:new", ledger)

    assert again == handle == ledger.start_handle
    assert calls["UpdateService"] == 1
    assert calls["RegisterTaskDefinition"] == 1
    families = ecs.list_task_definitions(familyPrefix="web")["taskDefinitionArns"]
    assert [arn.rsplit("/", 1)[-1] for arn in families] == ["web:1", "web:2"]
    assert ledger.revision_before.endswith("web:1")
    assert ledger.revision_made.endswith("web:2")
    assert ledger.writes[0] == {"revision_before": ledger.revision_before}  # before anything

    simulator.advance(5)
    restored = target.restore(placement, ledger.revision_before, ledger)
    ledger.restore_handle = ""
    restored_again = target.restore(placement, ledger.revision_before, ledger)

    assert restored_again == restored == ledger.restore_handle != handle
    assert calls["UpdateService"] == 2
    assert calls["RegisterTaskDefinition"] == 1
    assert target.current(placement) == ledger.revision_before


def test_one_client_per_region_and_endpoint(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-for-tests")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    first = ecs_module.client("ecs", "us-east-1")

    assert ecs_module.client("ecs", "us-east-1") is first
    assert ecs_module.client("ecs", "eu-west-1") is not first
    assert ecs_module.client("ecr", "us-east-1") is not first

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    elsewhere = ecs_module.client("ecs", "us-east-1")
    assert elsewhere is not first
    assert elsewhere.meta.endpoint_url == "http://127.0.0.1:1"
    assert ecs_module.client("ecs", "us-east-1") is elsewhere

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "someone-else")
    assert ecs_module.client("ecs", "us-east-1") is not elsewhere

    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    assert ecs_module.client("ecs", "us-east-1") is first
    ecs_module.forget_clients()
    assert ecs_module.client("ecs", "us-east-1") is not first
