"""Where an application's processes run: clusters, services (process types) and placements,
the plan that moves services from legacy deploy jobs to ECS, and what those jobs deployed."""

from django.conf import settings
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords


class ClusterKind(models.TextChoices):
    ECS = "ecs", "ECS"
    DOCKER = "docker", "Docker host"


class Cluster(models.Model):
    """Where placements run: an ECS cluster (region, ARN) or a Docker host (its address)."""

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=20, choices=ClusterKind.choices, default=ClusterKind.ECS)
    region = models.CharField(max_length=40, default="us-east-1")
    arn = models.CharField(max_length=300, blank=True)
    docker_host = models.CharField(
        max_length=300,
        blank=True,
        help_text="A Docker host's engine: unix:///var/run/docker.sock or tcp://host:2376 "
        "(TLS settings from the environment, never here).",
    )
    reserved_memory_minimum = models.PositiveIntegerField(
        default=256,
        help_text="MiB each container instance must keep from ECS for the agent and the Docker "
        "daemon (ECS_RESERVED_MEMORY): an instance that registers more of its memory is "
        "reported; on a Docker host, what its running containers' hard limits must leave "
        "for the Docker daemon.",
    )
    drain_disconnected = models.BooleanField(
        default=False,
        help_text="Set a container instance whose ECS agent stayed disconnected past the grace "
        "period to DRAINING, so its tasks move (and back to ACTIVE when it reconnects).",
    )
    # Every saved version, with who saved it (deploys.Application says why).
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ReportKind(models.TextChoices):
    AGENT_DISCONNECTED = "agent_disconnected", "ECS agent disconnected"
    ALL_AGENTS_DISCONNECTED = "all_agents_disconnected", "every ECS agent disconnected"
    RESERVED_MEMORY = "reserved_memory", "too little memory reserved for the system"
    CRASH_LOOP = "crash_loop", "crash loop: OOM-killed on host after host"


class ClusterReport(models.Model):
    """Something wrong with a cluster that only shows in production (clusters/health): open
    while it lasts, closed when it is over, kept as history. One open report per cluster,
    kind and subject, however often the check runs or races with itself."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="reports")
    kind = models.CharField(max_length=40, choices=ReportKind.choices)
    subject = models.CharField(max_length=300, blank=True)  # an instance; "" the whole cluster
    message = models.TextField()
    detail = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_why = models.TextField(blank=True)
    # Fat Controller set the instance to DRAINING for this report, and undoes it on closing.
    drained = models.BooleanField(default=False)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "kind", "subject"],
                condition=models.Q(closed_at__isnull=True),
                name="one_open_report_per_subject",
            )
        ]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.get_kind_display()} {self.subject}".strip()


class ContainerInstanceState(models.Model):
    """What the agent watch last saw of a container instance, and since when its agent has
    been connected or not (ECS does not say)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="instances")
    arn = models.CharField(max_length=300)
    ec2_instance_id = models.CharField(max_length=40, blank=True)
    status = models.CharField(max_length=40, blank=True)  # ACTIVE, DRAINING, ...
    agent_connected = models.BooleanField(default=True)
    since = models.DateTimeField(default=timezone.now)  # agent_connected has held since
    seen_at = models.DateTimeField(default=timezone.now)
    # As ECS described them at seen_at (MiB, CPU units); type_memory is the instance type's.
    instance_type = models.CharField(max_length=40, blank=True)
    type_memory = models.PositiveIntegerField(null=True, blank=True)
    registered_memory = models.PositiveIntegerField(null=True, blank=True)
    remaining_memory = models.PositiveIntegerField(null=True, blank=True)
    registered_cpu = models.PositiveIntegerField(null=True, blank=True)
    remaining_cpu = models.PositiveIntegerField(null=True, blank=True)
    running_tasks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["cluster", "ec2_instance_id", "arn"]
        constraints = [
            models.UniqueConstraint(fields=["cluster", "arn"], name="one_state_per_instance")
        ]

    def __str__(self) -> str:
        return f"{self.cluster.name}: {self.name}"

    @property
    def name(self) -> str:
        return self.ec2_instance_id or self.arn.rsplit("/", 1)[-1]

    @property
    def reserved_memory(self) -> int | None:
        """MiB kept from ECS for the agent and the Docker daemon, where known."""
        if self.type_memory is None or self.registered_memory is None:
            return None
        return self.type_memory - self.registered_memory


class ProcessType(models.TextChoices):
    WEB = "web", "Web"
    STATIC = "static", "Static"
    WORKER = "worker", "Worker"
    POLLER = "poller", "Poller"
    OTHER = "other", "Other"


class Service(models.Model):
    """A process type of an application, rolled out in its phase (lowest risk first)."""

    application = models.ForeignKey(
        "deploys.Application", on_delete=models.CASCADE, related_name="services"
    )
    name = models.CharField(max_length=200)
    process_type = models.CharField(max_length=20, choices=ProcessType.choices)
    phase = models.PositiveIntegerField(default=1, help_text="Lower phases go out first.")
    health_check_url = models.URLField(
        blank=True, help_text="Checked while the service rolls out and soaks; must answer 2xx."
    )
    migration_phase = models.ForeignKey(
        "MigrationPhase",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="services",
        help_text="The phase of the application's migration plan that moves it to ECS.",
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["application", "phase", "name"]
        constraints = [
            models.UniqueConstraint(fields=["application", "name"], name="unique_service_name")
        ]

    def __str__(self) -> str:
        return f"{self.application.slug}/{self.name}"


class PlacementKind(models.TextChoices):
    ECS = "ecs", "ECS"
    LEGACY = "legacy", "Legacy"
    DOCKER = "docker", "Docker"


class Placement(models.Model):
    """A service on one target: an ECS service on a cluster, or a legacy deploy job."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="placements")
    kind = models.CharField(max_length=20, choices=PlacementKind.choices, default=PlacementKind.ECS)
    cluster = models.ForeignKey(
        Cluster, null=True, blank=True, on_delete=models.PROTECT, related_name="placements"
    )
    ecs_service_name = models.CharField(max_length=255, blank=True)
    container_name = models.CharField(max_length=255, blank=True)
    legacy_job = models.CharField(max_length=255, blank=True)
    docker_config = models.JSONField(
        default=dict,
        blank=True,
        help_text="A Docker placement's containers: replicas, command, environment, ports, "
        "health check, hard memory limit, stop timeout, max surge and min healthy.",
    )
    legacy_version = models.CharField(
        max_length=200,
        blank=True,
        help_text="The version a legacy job ran before Fat Controller deployed it (what a "
        "restore puts back until a deploy of its own has succeeded).",
    )
    retired_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Retired by its migration phase's end: kept for history, never deployed again.",
    )
    history = HistoricalRecords()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind=PlacementKind.ECS) | models.Q(cluster__isnull=False),
                name="ecs_placement_has_cluster",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=PlacementKind.DOCKER) | models.Q(cluster__isnull=False),
                name="docker_placement_has_host",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.service} on {self.cluster or self.legacy_job}"

    @property
    def side(self) -> str:
        """The side of a migration it is on, as pages and the timeline say it: "legacy",
        "ECS", "Docker"."""
        return "legacy" if self.kind == PlacementKind.LEGACY else self.get_kind_display()


class MigrationState(models.TextChoices):
    """Where a migration phase's services run: legacy only, both sides, ECS only."""

    PLANNED = "planned", "Planned"
    DUAL_RUNNING = "dual_running", "Dual running"
    CUT_OVER = "cut_over", "Cut over"
    DONE = "done", "Done"


class MigrationPlan(models.Model):
    """An application's move from legacy deploy jobs to ECS, one phase of services at a time.

    A phase is cut over only once the ECS side of each of its services has been out and
    healthy through `proof_deploys` deploys and `proof_hours` hours of dual running.
    """

    application = models.OneToOneField(
        "deploys.Application", on_delete=models.CASCADE, related_name="migration_plan"
    )
    proof_deploys = models.PositiveIntegerField(default=3)
    proof_hours = models.PositiveIntegerField(default=24)

    def __str__(self) -> str:
        return f"migration plan of {self.application.slug}"


class MigrationPhase(models.Model):
    plan = models.ForeignKey(MigrationPlan, on_delete=models.CASCADE, related_name="phases")
    position = models.PositiveIntegerField(help_text="1 goes first.")
    name = models.CharField(max_length=200)
    state = models.CharField(
        max_length=20, choices=MigrationState.choices, default=MigrationState.PLANNED
    )
    state_since = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["plan", "position"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "position"], name="unique_phase_position"),
            models.UniqueConstraint(fields=["plan", "name"], name="unique_phase_name"),
        ]

    def __str__(self) -> str:
        return f"phase {self.position} ({self.name}) of {self.plan.application.slug}"


class MigrationMove(models.Model):
    """A person moved a phase on: who, when, why, and whether a rule was overridden."""

    phase = models.ForeignKey(MigrationPhase, on_delete=models.CASCADE, related_name="moves")
    from_state = models.CharField(max_length=20, choices=MigrationState.choices)
    to_state = models.CharField(max_length=20, choices=MigrationState.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, help_text="Kept if the user is deleted.")
    reason = models.CharField(max_length=1000)
    forced = models.BooleanField(default=False)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.phase}: {self.from_state} -> {self.to_state} by {self.actor_name}"


class LegacyRunPurpose(models.TextChoices):
    DEPLOY = "deploy", "Deploy"
    RESTORE = "restore", "Restore"


class LegacyRun(models.Model):
    """One trigger of a legacy deploy job, as its target (clusters/targets/legacy.py) saw it.

    The version a legacy placement runs is the version of its last successful run, since a
    legacy job cannot be asked (Placement.legacy_version before the first). `request` is a
    parameter of the trigger, so a trigger retried after a lost answer is found, not doubled.
    """

    placement = models.ForeignKey(Placement, on_delete=models.PROTECT, related_name="legacy_runs")
    purpose = models.CharField(max_length=20, choices=LegacyRunPurpose.choices)
    request = models.CharField(max_length=64, unique=True)
    version = models.CharField(max_length=200)
    image = models.CharField(max_length=500, blank=True)
    commit = models.CharField(max_length=40, blank=True)
    queue_id = models.BigIntegerField(null=True, blank=True)
    build_number = models.PositiveIntegerField(null=True, blank=True)
    build_url = models.CharField(max_length=500, blank=True)
    result = models.CharField(max_length=40, blank=True, help_text="Jenkins' word: SUCCESS...")
    log = models.TextField(blank=True)
    log_offset = models.BigIntegerField(default=0, help_text="Jenkins' byte offset read to.")
    triggered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.placement.legacy_job} {self.purpose} of {self.version}"
