"""The ECS simulator: moto's ECS, through real boto3, deploying like ECS."""

import time
import urllib.request

import boto3
import pytest
from moto import mock_aws
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.server import ThreadedMotoServer

from devtools.ecs_simulator import EcsSimulator

REGION = "eu-west-1"
CLUSTER = "shop"
SERVICE = "web"
SCALING = "Scaling activity initiated by (deployment {})"


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-key-for-tests")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_env):
    with mock_aws():
        yield


@pytest.fixture
def sim(aws):
    with EcsSimulator(task_start_seconds=1, task_fail_after_seconds=1) as simulator:
        yield simulator


@pytest.fixture
def ecs(aws):
    return boto3.client("ecs", region_name=REGION)


def register(ecs, image: str, family: str = SERVICE) -> str:
    response = ecs.register_task_definition(
        family=family,
        networkMode="bridge",
        containerDefinitions=[{"name": family, "image": image, "memory": 128}],
    )
    return response["taskDefinition"]["taskDefinitionArn"]


def create_web(ecs, image: str = "shop:1", **kwargs) -> str:
    ecs.create_cluster(clusterName=CLUSTER)
    task_definition = register(ecs, image)
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=task_definition,
        desiredCount=2,
        **kwargs,
    )
    return task_definition


def describe(ecs, service: str = SERVICE) -> dict:
    return ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]


def tasks(ecs, **filters) -> list[dict]:
    arns = ecs.list_tasks(cluster=CLUSTER, **filters)["taskArns"]
    return ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else []


def deployed_web(ecs, sim) -> str:
    """The web service, created and COMPLETED on shop:1; returns its task definition."""
    task_definition = create_web(ecs)
    sim.advance(2)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"
    return task_definition


def test_create_service_starts_tasks_one_by_one_and_completes(sim, ecs):
    task_definition = create_web(ecs)

    (deployment,) = describe(ecs)["deployments"]
    assert deployment["id"].startswith("ecs-svc/")
    assert deployment["id"].removeprefix("ecs-svc/").isdigit()
    assert (deployment["status"], deployment["rolloutState"]) == ("PRIMARY", "IN_PROGRESS")
    assert (deployment["runningCount"], deployment["pendingCount"]) == (0, 2)

    sim.advance(1)
    service = describe(ecs)
    assert (service["runningCount"], service["pendingCount"]) == (1, 1)
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"

    sim.advance(1)
    service = describe(ecs)
    (deployment,) = service["deployments"]
    assert deployment["rolloutState"] == "COMPLETED"
    assert deployment["rolloutStateReason"] == f"ECS deployment {deployment['id']} completed."
    assert (service["runningCount"], service["pendingCount"]) == (2, 0)
    assert service["events"][0]["message"] == "(service web) has reached a steady state."

    running = tasks(ecs, startedBy=deployment["id"])
    assert len(running) == 2
    for task in running:
        assert task["lastStatus"] == "RUNNING"
        assert task["desiredStatus"] == "RUNNING"
        assert task["group"] == "service:web"
        assert task["taskDefinitionArn"] == task_definition
        assert task["startedAt"] >= task["createdAt"]
        assert "stoppedAt" not in task
    # moto's ecs::task state machine moves a task on every describe_tasks; the simulator's
    # tasks stay where the scheduler put them.
    for _ in range(5):
        assert {t["lastStatus"] for t in tasks(ecs, serviceName=SERVICE)} == {"RUNNING"}
    assert ecs.describe_clusters(clusters=[CLUSTER])["clusters"][0]["runningTasksCount"] == 2


def test_update_service_rolls_out_a_new_revision_step_by_step(sim, ecs):
    old_definition = deployed_web(ecs, sim)
    old_id = describe(ecs)["deployments"][0]["id"]
    new_definition = register(ecs, "shop:2")

    updated = ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new_definition)
    primary, active = updated["service"]["deployments"]
    assert (primary["status"], primary["taskDefinition"]) == ("PRIMARY", new_definition)
    assert (active["status"], active["taskDefinition"], active["id"]) == (
        "ACTIVE",
        old_definition,
        old_id,
    )
    assert primary["id"] != old_id
    assert primary["rolloutState"] == "IN_PROGRESS"
    assert (primary["desiredCount"], primary["runningCount"], primary["pendingCount"]) == (2, 0, 2)
    assert primary["failedTasks"] == 0
    assert primary["createdAt"] <= primary["updatedAt"]
    assert active["runningCount"] == 2

    sim.advance(1)
    primary, active = describe(ecs)["deployments"]
    assert (primary["runningCount"], active["runningCount"]) == (1, 1)
    (stopped,) = tasks(ecs, startedBy=old_id, desiredStatus="STOPPED")
    assert stopped["lastStatus"] == "STOPPED"
    assert stopped["stopCode"] == "ServiceSchedulerInitiated"
    assert stopped["stoppedReason"] == SCALING.format(primary["id"])
    assert stopped["containers"][0]["exitCode"] == 0
    assert stopped["stoppedAt"] >= stopped["startedAt"]

    sim.advance(1)
    service = describe(ecs)
    (deployment,) = service["deployments"]
    assert (deployment["id"], deployment["rolloutState"]) == (primary["id"], "COMPLETED")
    assert service["taskDefinition"] == new_definition
    running = tasks(ecs, serviceName=SERVICE)
    assert [t["taskDefinitionArn"] for t in running] == [new_definition] * 2
    assert len(tasks(ecs, startedBy=old_id, desiredStatus="STOPPED")) == 2


def test_desired_count_only_changes_counts(sim, ecs):
    deployed_web(ecs, sim)
    deployment_id = describe(ecs)["deployments"][0]["id"]

    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)
    (deployment,) = describe(ecs)["deployments"]
    assert deployment["id"] == deployment_id
    assert (deployment["desiredCount"], deployment["runningCount"]) == (3, 2)
    assert deployment["pendingCount"] == 1
    sim.advance(1)
    assert describe(ecs)["runningCount"] == 3

    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    assert describe(ecs)["runningCount"] == 1
    assert len(tasks(ecs, startedBy=deployment_id, desiredStatus="STOPPED")) == 2


def test_force_new_deployment_redeploys_the_same_revision(sim, ecs):
    task_definition = deployed_web(ecs, sim)
    old_id = describe(ecs)["deployments"][0]["id"]

    ecs.update_service(cluster=CLUSTER, service=SERVICE, forceNewDeployment=True)
    primary, active = describe(ecs)["deployments"]
    assert primary["id"] != old_id
    assert primary["taskDefinition"] == active["taskDefinition"] == task_definition
    sim.advance(2)
    (deployment,) = describe(ecs)["deployments"]
    assert (deployment["id"], deployment["rolloutState"]) == (primary["id"], "COMPLETED")


def test_failing_tasks_keep_failing_and_the_deployment_stays_in_progress(sim, ecs):
    old_definition = deployed_web(ecs, sim)
    new_definition = register(ecs, "shop:2")
    sim.fail_new_tasks(CLUSTER, SERVICE)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new_definition)
    deployment_id = describe(ecs)["deployments"][0]["id"]

    sim.advance(30)
    service = describe(ecs)
    primary, active = service["deployments"]
    assert primary["id"] == deployment_id
    assert primary["rolloutState"] == "IN_PROGRESS"
    assert primary["failedTasks"] >= 10
    assert (active["taskDefinition"], active["runningCount"]) == (old_definition, 2)

    stopped = tasks(ecs, startedBy=deployment_id, desiredStatus="STOPPED")
    assert len(stopped) == primary["failedTasks"]
    for task in stopped:
        assert task["taskDefinitionArn"] == new_definition
        assert task["stopCode"] == "EssentialContainerExited"
        assert task["stoppedReason"].startswith("OutOfMemoryError")
        assert task["containers"][0]["exitCode"] == 137
        assert task["containers"][0]["reason"].startswith("OutOfMemoryError")
        assert task["stoppedAt"] > task["startedAt"]
    assert any("unable to consistently start tasks" in e["message"] for e in service["events"])

    # The next deployment is not doomed: fixing forward completes.
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=register(ecs, "shop:3"))
    sim.advance(3)
    (deployment,) = describe(ecs)["deployments"]
    assert deployment["rolloutState"] == "COMPLETED"


def test_stalled_deployment_never_runs_a_task(sim, ecs):
    old_definition = deployed_web(ecs, sim)
    new_definition = register(ecs, "shop:2")
    sim.stall(CLUSTER, SERVICE)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new_definition)

    sim.advance(600)
    primary, active = describe(ecs)["deployments"]
    assert (primary["rolloutState"], primary["runningCount"], primary["pendingCount"]) == (
        "IN_PROGRESS",
        0,
        2,
    )
    assert (active["taskDefinition"], active["runningCount"]) == (old_definition, 2)
    running = [t for t in tasks(ecs, serviceName=SERVICE) if t["lastStatus"] == "RUNNING"]
    assert {t["taskDefinitionArn"] for t in running} == {old_definition}
    assert {t["lastStatus"] for t in tasks(ecs, startedBy=primary["id"])} == {"PENDING"}

    sim.clear()  # forgetting the behaviour lets the pending tasks start
    sim.advance(2)
    (deployment,) = describe(ecs)["deployments"]
    assert (deployment["id"], deployment["rolloutState"]) == (primary["id"], "COMPLETED")


def test_circuit_breaker_rolls_back_to_the_old_revision(sim, ecs):
    old_definition = deployed_web(ecs, sim)
    new_definition = register(ecs, "shop:2")
    sim.circuit_breaker_rollback(CLUSTER, SERVICE)
    updated = ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=new_definition)
    failing_id = updated["service"]["deployments"][0]["id"]

    failed = None
    for _ in range(20):
        sim.advance(0.5)
        failed = next(d for d in describe(ecs)["deployments"] if d["id"] == failing_id)
        if failed["rolloutState"] == "FAILED":
            break
    assert failed["rolloutState"] == "FAILED"
    assert failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start."
    assert failed["failedTasks"] == 3
    assert failed["status"] == "ACTIVE"
    assert describe(ecs)["deployments"][0]["taskDefinition"] == old_definition

    sim.advance(10)
    service = describe(ecs)
    (deployment,) = service["deployments"]
    assert service["taskDefinition"] == old_definition
    assert (deployment["status"], deployment["rolloutState"]) == ("PRIMARY", "COMPLETED")
    assert deployment["taskDefinition"] == old_definition
    assert deployment["id"] != failing_id
    assert service["runningCount"] == 2
    assert {t["taskDefinitionArn"] for t in tasks(ecs, serviceName=SERVICE)} == {old_definition}
    messages = [e["message"] for e in service["events"]]
    assert f"(service web) (deployment {failing_id}) deployment failed: tasks failed to start." in (
        messages
    )
    assert messages[0] == "(service web) has reached a steady state."


def test_behave_by_image_with_the_services_own_circuit_breaker(sim, ecs):
    sim.behave_by_image("broken", "oom")
    breaker = {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}
    old_definition = create_web(ecs, deploymentConfiguration=breaker)
    # A second service whose image is fine shows the marker is what matters.
    ecs.create_service(
        cluster=CLUSTER,
        serviceName="worker",
        taskDefinition=register(ecs, "shop-worker:1", family="worker"),
        desiredCount=1,
    )
    sim.advance(2)
    configuration = describe(ecs)["deploymentConfiguration"]
    assert configuration["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}

    broken = register(ecs, "registry.example.com/shop:broken-build")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=broken)
    failing_id = describe(ecs)["deployments"][0]["id"]
    ecs.update_service(
        cluster=CLUSTER, service="worker", taskDefinition=register(ecs, "shop-worker:2", "worker")
    )
    sim.advance(20)

    service = describe(ecs)
    assert service["taskDefinition"] == old_definition
    assert service["deployments"][0]["rolloutState"] == "COMPLETED"
    stopped = tasks(ecs, startedBy=failing_id, desiredStatus="STOPPED")
    failed = [t for t in stopped if t["stopCode"] == "EssentialContainerExited"]
    assert len(failed) == 3  # the threshold
    assert {t["stoppedReason"] for t in failed} == {
        "OutOfMemoryError: Container killed due to memory usage"
    }
    assert {t["containers"][0]["exitCode"] for t in failed} == {137}
    (worker,) = describe(ecs, "worker")["deployments"]
    assert (worker["rolloutState"], worker["failedTasks"]) == ("COMPLETED", 0)


def test_exit_behaviour_without_circuit_breaker(sim, ecs):
    sim.behave_by_image(":crash", "exit")
    create_web(ecs, image="shop:crash")
    sim.advance(5)
    (deployment,) = describe(ecs)["deployments"]
    assert deployment["rolloutState"] == "IN_PROGRESS"
    assert deployment["failedTasks"] >= 3
    stopped = tasks(ecs, startedBy=deployment["id"], desiredStatus="STOPPED")
    assert {t["stoppedReason"] for t in stopped} == {"Essential container in task exited"}
    assert {t["containers"][0]["exitCode"] for t in stopped} == {1}


def test_stopping_a_task_starts_a_replacement(sim, ecs):
    deployed_web(ecs, sim)
    victim = tasks(ecs, serviceName=SERVICE)[0]["taskArn"]
    ecs.stop_task(cluster=CLUSTER, task=victim, reason="poked")
    assert describe(ecs)["pendingCount"] == 1
    (stopped,) = ecs.describe_tasks(cluster=CLUSTER, tasks=[victim])["tasks"]
    assert (stopped["stopCode"], stopped["stoppedReason"]) == ("UserInitiated", "poked")
    sim.advance(1)
    assert describe(ecs)["runningCount"] == 2


def test_advance_progresses_every_region(sim, ecs):
    create_web(ecs)
    other = boto3.client("ecs", region_name="us-east-1")
    create_web(other)
    sim.advance(2)
    for client in (ecs, other):
        assert describe(client)["deployments"][0]["rolloutState"] == "COMPLETED"


def test_uninstall_restores_moto(aws, ecs):
    original = EC2ContainerServiceBackend.__dict__["update_service"]
    simulator = EcsSimulator()
    simulator.install()
    assert EC2ContainerServiceBackend.__dict__["update_service"] is not original
    create_web(ecs)
    simulator.uninstall()
    simulator.uninstall()  # idempotent
    assert EC2ContainerServiceBackend.__dict__["update_service"] is original
    assert "call_action" not in EC2ContainerServiceResponse.__dict__  # inherited again

    deployment_id = describe(ecs)["deployments"][0]["id"]
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=register(ecs, "shop:2"))
    (deployment,) = describe(ecs)["deployments"]
    assert deployment["id"] == deployment_id  # moto's own update_service: no new deployment


def test_only_one_simulator_at_a_time(sim):
    with pytest.raises(RuntimeError):
        EcsSimulator().install()


@pytest.fixture
def server(aws_env):
    moto_server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto_server.start()
    host, port = moto_server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    reset = urllib.request.Request(f"{url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
    urllib.request.urlopen(reset, timeout=5).close()  # noqa: S310 - our own server
    moto_server.stop()


def test_threaded_server_with_a_running_clock(server):
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=server)
    with EcsSimulator(task_start_seconds=0.1, task_fail_after_seconds=0.1) as simulator:
        simulator.start_clock(interval=0.02)
        create_web(ecs)
        deadline = time.monotonic() + 10
        while True:
            # describe_tasks races the clock thread: it must never see a half-made state.
            assert len(tasks(ecs, serviceName=SERVICE, desiredStatus="STOPPED")) == 0
            deployments = describe(ecs)["deployments"]
            if deployments[0]["rolloutState"] == "COMPLETED":
                break
            assert time.monotonic() < deadline, deployments
            time.sleep(0.02)
        assert describe(ecs)["runningCount"] == 2
        # The test process reaches the server's state directly.
        backend = ecs_backends["123456789012"][REGION]
        assert len(backend.tasks[CLUSTER]) == 2
    assert simulator._clock_thread is None


ANNOTATION = "org.example.behaviour"
ECR_REPOSITORY = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/shop"


def push(tag: str, annotations: dict | None = None) -> str:
    """Put a made-up manifest (with `annotations`) into moto's ECR; returns its digest."""
    import json

    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1},
        "layers": [{"digest": f"sha256:{tag:0>64}", "size": 1}],
    }
    if annotations is not None:
        manifest["annotations"] = annotations
    ecr = boto3.client("ecr", region_name=REGION)
    image = ecr.put_image(repositoryName="shop", imageTag=tag, imageManifest=json.dumps(manifest))
    return image["image"]["imageId"]["imageDigest"]


def test_behaviour_from_the_image_manifest_annotation(sim, ecs):
    boto3.client("ecr", region_name=REGION).create_repository(repositoryName="shop")
    push("base")
    push("fine", {ANNOTATION: "ok", "org.opencontainers.image.title": "shop"})
    push("oom", {ANNOTATION: "oom"})
    digest = push("exit", {ANNOTATION: "exit"})
    push("odd", {ANNOTATION: "sing"})
    ecs.create_cluster(clusterName=CLUSTER)
    base = register(ecs, f"{ECR_REPOSITORY}:base")
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=base, desiredCount=2)
    sim.advance(2)

    # Not opted in: the annotation means nothing.
    ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=register(ecs, f"{ECR_REPOSITORY}:oom")
    )
    sim.advance(3)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"

    sim.behave_by_image_annotation(ANNOTATION)
    for tag, expected in (("fine", "COMPLETED"), ("odd", "COMPLETED"), ("base", "COMPLETED")):
        ecs.update_service(
            cluster=CLUSTER,
            service=SERVICE,
            taskDefinition=register(ecs, f"{ECR_REPOSITORY}:{tag}"),
        )
        sim.advance(3)
        (deployment,) = describe(ecs)["deployments"]
        assert (tag, deployment["rolloutState"]) == (tag, expected)

    ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=register(ecs, f"{ECR_REPOSITORY}:oom")
    )
    failing = describe(ecs)["deployments"][0]["id"]
    sim.advance(5)
    service = describe(ecs)
    assert service["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    assert service["deployments"][0]["failedTasks"] >= 2
    assert service["runningCount"] >= 2  # the old tasks keep serving
    stopped = tasks(ecs, startedBy=failing, desiredStatus="STOPPED")
    assert {t["stoppedReason"] for t in stopped} == {
        "OutOfMemoryError: Container killed due to memory usage"
    }
    assert {t["containers"][0]["exitCode"] for t in stopped} == {137}

    # By digest too; turned off, the next deployment of an annotated image behaves.
    ecs.update_service(
        cluster=CLUSTER,
        service=SERVICE,
        taskDefinition=register(ecs, f"{ECR_REPOSITORY}@{digest}"),
    )
    by_digest = describe(ecs)["deployments"][0]["id"]
    sim.advance(5)
    stopped = tasks(ecs, startedBy=by_digest, desiredStatus="STOPPED")
    assert stopped and {t["containers"][0]["exitCode"] for t in stopped} == {1}

    sim.behave_by_image_annotation(None)
    ecs.update_service(
        cluster=CLUSTER, service=SERVICE, taskDefinition=register(ecs, f"{ECR_REPOSITORY}:oom")
    )
    sim.advance(5)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"


def test_annotations_of_images_outside_ecr_are_not_looked_up(sim, ecs):
    sim.behave_by_image_annotation(ANNOTATION)
    create_web(ecs, image="registry.example.com/shop:oom")
    sim.advance(3)
    assert describe(ecs)["deployments"][0]["rolloutState"] == "COMPLETED"
    with pytest.raises(ValueError):
        sim.behave_by_image_annotation("")
