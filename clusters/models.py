"""Where an application's processes run: clusters, services (process types) and placements."""

from django.db import models


class Cluster(models.Model):
    name = models.CharField(max_length=200, unique=True)
    region = models.CharField(max_length=40, default="us-east-1")
    arn = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


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

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(kind=PlacementKind.ECS) | models.Q(cluster__isnull=False),
                name="ecs_placement_has_cluster",
            )
        ]

    def __str__(self) -> str:
        return f"{self.service} on {self.cluster or self.legacy_job}"
