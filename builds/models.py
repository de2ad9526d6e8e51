from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Concat


class BuildStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"
    ERROR = "error", "Error"


FINISHED_BUILD_STATUSES = frozenset(
    {BuildStatus.SUCCEEDED, BuildStatus.FAILED, BuildStatus.ABORTED, BuildStatus.ERROR}
)


class Build(models.Model):
    """One attempt at building and testing a deploy's candidate."""

    deploy = models.ForeignKey("deploys.Deploy", on_delete=models.CASCADE, related_name="builds")
    attempt = models.PositiveIntegerField()
    status = models.CharField(
        max_length=20, choices=BuildStatus.choices, default=BuildStatus.PENDING
    )
    backend = models.CharField(max_length=20, default="local")
    external_url = models.URLField(blank=True)
    log = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="Touched while the build runs, so a dead one shows."
    )

    class Meta:
        ordering = ["deploy", "attempt"]
        constraints = [
            models.UniqueConstraint(fields=["deploy", "attempt"], name="one_build_per_attempt")
        ]

    def __str__(self) -> str:
        return f"build {self.attempt} of deploy {self.deploy_id}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_BUILD_STATUSES

    @property
    def link_url(self) -> str:
        """external_url when it is safe to put in a link (no javascript: or data: URLs)."""
        return self.external_url if self.external_url.startswith(("https://", "http://")) else ""

    def append_log(self, text: str) -> None:
        """Append in the database, so the log is never read whole to grow it."""
        Build.objects.filter(pk=self.pk).update(log=Concat(F("log"), Value(text)))
