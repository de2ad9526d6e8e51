"""manage.py runmoto: the embedded default's simulated AWS, for the demo to deploy to.

moto's server (ECS, ECR and the rest of AWS's APIs, in memory) on 127.0.0.1, with the ECS
deployment simulator installed in the same process and its clock running, so a deployment
starts a task a second, and an image whose manifest carries the annotation
org.fatcontroller.demo.behaviour (devtools.demo.BEHAVIOUR_ANNOTATION) behaves as it says.

On start it makes the demo's AWS side from devtools/demo-shop.fatcontroller.yml: the
ECR repository of its image_repository (with a first image tagged `base`), its clusters, and
for each ECS placement a service running a bridge-mode task definition whose container runs
image_repository:base, DESIRED_COUNT tasks. moto keeps everything in memory, so this is made
again at every start (only what is missing, so a second run against a live server harms
nothing). Run by `runembedded` unless AWS_ENDPOINT_URL says where AWS is.
"""

import errno
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from clusters.models import PlacementKind
from devtools.demo import BEHAVIOUR_ANNOTATION, demo_config

HOST = "127.0.0.1"
DEFAULT_PORT = 8001  # beside the web's 8000
# What the web, the worker and beat are given to reach it: moto takes any credentials.
CREDENTIALS = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo"}
REGION = "us-east-1"
BASE_TAG = "base"
DESIRED_COUNT = 2
TASK_START_SECONDS = 1.0  # a demo phase takes seconds, not minutes
TASK_FAIL_AFTER_SECONDS = 1.0
# The demo's leaking image ("leak"): its tasks outlive the whole deploy (three phases, the
# legacy jobs and the 5 s watch before the merge) even on a busy machine, where that took
# over 20 s, so the deploy succeeds and the crash loop shows afterwards, host after host,
# until the crash loop check stops it. Sooner, the deploy's own watch catches the OOM and
# rolls it back (as it should), and the demo shows no crash loop.
LEAK_AFTER_SECONDS = 60.0
LEAK_SETTING = "FC_DEMO_LEAK_SECONDS"  # the tests' shorter deploys take a shorter one

ECR_REPOSITORY_HOST = ".dkr.ecr."

# The demo cluster's container instances, for the cluster health checks to find (README,
# "Cluster health"): m5.large has 8192 MiB. Two keep 512 MiB for the ECS agent and the Docker
# daemon; one keeps none (the reserved memory check reports it); one's agent is disconnected
# (the agent watch reports it past its grace and drains it).
DEMO_INSTANCE_TYPE = "m5.large"
DEMO_INSTANCES = (
    ("healthy", 8192 - 512, True),
    ("healthy", 8192 - 512, True),
    ("no memory reserved", 8192, True),
    ("agent disconnected", 8192 - 512, False),
)


def port_setting(name: str, default: int) -> int:
    """The port the environment variable `name` says, or `default`."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise CommandError(f"{name} must be a port number, not {text!r}")
    return port


def seconds_setting(name: str, default: float, least: float = 0.0, most: float = 3600.0) -> float:
    """The seconds the environment variable `name` says (`least` to `most`), or `default`."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not least <= seconds <= most:
        raise CommandError(f"{name} must be seconds ({least:g} to {most:g}), not {text!r}")
    return seconds


def moto_port() -> int:
    """FC_MOTO_PORT, or DEFAULT_PORT."""
    return port_setting("FC_MOTO_PORT", DEFAULT_PORT)


def endpoint_for(port: int) -> str:
    return f"http://{HOST}:{port}"


@dataclass(frozen=True)
class DemoService:
    region: str
    cluster: str
    name: str
    container: str
    phase: int


@dataclass(frozen=True)
class DemoAws:
    """The AWS side the demo's configuration names."""

    registry_id: str
    repository_region: str
    repository: str
    base_image: str
    services: tuple[DemoService, ...]


def demo_aws() -> DemoAws:
    config = demo_config()
    image_repository = config.image_repository or ""
    host, _, repository = image_repository.partition("/")
    if ECR_REPOSITORY_HOST not in host or not repository:
        raise CommandError(f"the demo's image_repository is not in ECR: {image_repository!r}")
    registry_id, _, rest = host.partition(ECR_REPOSITORY_HOST)
    services = []
    for service in config.services:
        for placement in service.placements:
            if placement.kind != PlacementKind.ECS:
                continue
            cluster = config.clusters.get(placement.cluster)
            services.append(
                DemoService(
                    region=(cluster.region if cluster and cluster.region else REGION),
                    cluster=placement.cluster,
                    name=placement.ecs_service,
                    container=placement.container,
                    phase=service.phase,
                )
            )
    return DemoAws(
        registry_id=registry_id,
        repository_region=rest.split(".", 1)[0],
        repository=repository,
        base_image=f"{image_repository}:{BASE_TAG}",
        services=tuple(services),
    )


def _client(service: str, endpoint: str, region: str, *, patient: bool = True):
    config = Config(
        connect_timeout=5 if patient else 1,
        read_timeout=30 if patient else 2,
        retries={"mode": "standard", "max_attempts": 3 if patient else 1},
    )
    session = boto3.session.Session(region_name=region, **CREDENTIALS)
    return session.client(service, endpoint_url=endpoint, config=config)


def demo_aws_ready(endpoint: str, aws: DemoAws | None = None) -> bool:
    """Does the simulated AWS at `endpoint` answer, with every demo service made?"""
    aws = aws or demo_aws()
    wanted: dict[tuple[str, str], set[str]] = {}
    for service in aws.services:
        wanted.setdefault((service.region, service.cluster), set()).add(service.name)
    try:
        for (region, cluster), names in wanted.items():
            ecs = _client("ecs", endpoint, region, patient=False)
            found = ecs.describe_services(cluster=cluster, services=sorted(names))["services"]
            if {s["serviceName"] for s in found if s.get("status") == "ACTIVE"} != names:
                return False
    except (BotoCoreError, ClientError):
        return False
    return True


def create_demo_aws(endpoint: str, aws: DemoAws, simulator=None) -> list[str]:
    """Make what is missing of the demo's AWS side; returns what it made, for people. Given
    the ECS simulator (in the moto process), the demo's clusters get container instances
    (DEMO_INSTANCES) before their services, so the services' tasks are placed on them."""
    # The simulator module loads moto: only the moto process needs it, not its callers.
    from devtools.ecs_simulator import create_service

    made = []
    ecr = _client("ecr", endpoint, aws.repository_region)
    try:
        ecr.create_repository(repositoryName=aws.repository)
        made.append(f"ECR repository {aws.repository}")
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": "sha256:" + "0" * 64,
            "size": 1024,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "b" * 64,
                "size": 24 * 1024 * 1024,
            }
        ],
        "annotations": {"org.opencontainers.image.title": aws.repository},
    }
    try:
        ecr.put_image(
            registryId=aws.registry_id,
            repositoryName=aws.repository,
            imageTag=BASE_TAG,
            imageManifest=json.dumps(manifest, sort_keys=True),
        )
        made.append(f"image {aws.base_image}")
    except ecr.exceptions.ImageAlreadyExistsException:
        pass

    clients = {}
    for service in aws.services:
        ecs = clients.get(service.region) or _client("ecs", endpoint, service.region)
        clients[service.region] = ecs
        clusters = ecs.describe_clusters(clusters=[service.cluster])["clusters"]
        if not any(c.get("status") == "ACTIVE" for c in clusters):
            ecs.create_cluster(clusterName=service.cluster)
            made.append(f"ECS cluster {service.cluster} ({service.region})")
        if simulator is not None:
            made += _demo_instances(ecs, simulator, service.cluster, service.region)
        described = ecs.describe_services(cluster=service.cluster, services=[service.name])
        if any(s.get("status") == "ACTIVE" for s in described["services"]):
            continue
        task_definition = create_service(
            ecs,
            cluster=service.cluster,
            name=service.name,
            image=aws.base_image,
            container=service.container,
            desired_count=DESIRED_COUNT,
            memory=512,
        )
        made.append(
            f"ECS service {service.name} (phase {service.phase}) on {service.cluster}: "
            f"{task_definition.rsplit('/', 1)[-1]}, {DESIRED_COUNT} tasks of {aws.base_image}"
        )
    return made


def _demo_instances(ecs, simulator, cluster: str, region: str) -> list[str]:
    """DEMO_INSTANCES in a cluster that has no container instance yet."""
    if ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]:
        return []
    made = []
    for what, registered, connected in DEMO_INSTANCES:
        arn = simulator.add_container_instance(
            cluster, region=region, instance_type=DEMO_INSTANCE_TYPE, registered_memory=registered
        )
        if not connected:
            simulator.set_agent_connected(cluster, arn, False)
        made.append(
            f"container instance {arn.rsplit('/', 1)[-1]} on {cluster}: {DEMO_INSTANCE_TYPE}, "
            f"{registered} MiB registered ({what})"
        )
    return made


def check_free(port: int, setting: str = "FC_MOTO_PORT", what: str = "the simulated AWS") -> None:
    # ThreadedMotoServer.start() waits for ever when it cannot listen: ask first.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {HOST} is in use: set {setting} (or --port) to a free "
                    f"one for {what}"
                ) from None
            raise CommandError(f"cannot listen on {HOST}:{port}: {exc.strerror}") from None


class Command(BaseCommand):
    help = (
        "Run the simulated AWS (moto, with the ECS deployment simulator) on 127.0.0.1 and make "
        "the demo's ECR repository, cluster and services in it, until stopped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"default: FC_MOTO_PORT, else {DEFAULT_PORT}",
        )

    def handle(self, *args, port=None, **options):
        # Imported here: the simulator patches moto, which only this process may have.
        from moto.server import ThreadedMotoServer

        from devtools.ecs_simulator import EcsSimulator

        port = port if port is not None else moto_port()
        aws = demo_aws()
        check_free(port)
        # Every describe_services of every rollout tick would be logged otherwise.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

        endpoint = endpoint_for(port)
        simulator = EcsSimulator(
            task_start_seconds=TASK_START_SECONDS,
            task_fail_after_seconds=TASK_FAIL_AFTER_SECONDS,
            leak_after_seconds=seconds_setting(LEAK_SETTING, LEAK_AFTER_SECONDS, least=1.0),
        )
        server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
        simulator.install()
        simulator.behave_by_image_annotation(BEHAVIOUR_ANNOTATION)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            server.start()
            simulator.start_clock()
            started = time.monotonic()
            made = create_demo_aws(endpoint, aws, simulator)
            self.stdout.write(
                self.style.SUCCESS(
                    f"Simulated AWS (moto) on {endpoint}: made in "
                    f"{time.monotonic() - started:.1f} s"
                )
            )
            for line in made:
                self.stdout.write(f"  {line}")
            self.stdout.flush()
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        finally:
            simulator.uninstall()
            server.stop()
