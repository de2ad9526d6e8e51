from django.conf import settings
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Concat, Greatest, Length, Right


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
UNFINISHED_BUILD_STATUSES = frozenset({BuildStatus.PENDING, BuildStatus.RUNNING})


class Build(models.Model):
    """One attempt at building and testing a deploy's candidate."""

    deploy = models.ForeignKey("deploys.Deploy", on_delete=models.CASCADE, related_name="builds")
    attempt = models.PositiveIntegerField()
    status = models.CharField(
        max_length=20, choices=BuildStatus.choices, default=BuildStatus.PENDING
    )
    backend = models.CharField(max_length=20, default="local")
    image_tag = models.CharField(
        max_length=128, blank=True, help_text="The tag the build gives the image it pushes."
    )
    external_url = models.URLField(blank=True)
    queue_id = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="The backend's queue item, until it becomes a build."
    )
    build_number = models.PositiveIntegerField(null=True, blank=True)
    summary = models.CharField(max_length=500, blank=True, help_text="How it ended, in words.")
    trouble = models.CharField(
        max_length=500,
        blank=True,
        help_text="The backend's current problem (down, refusing), so it is told once.",
    )
    log = models.TextField(blank=True)
    log_cut_chars = models.PositiveBigIntegerField(
        default=0, help_text="Characters cut from the start of the log to keep it under the cap."
    )
    backend_log_offset = models.PositiveBigIntegerField(
        default=0, help_text="How far the backend's own log has been copied here."
    )
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

    @property
    def log_end(self) -> int:
        """The log's length as written, counting what the cap cut: offsets never move back."""
        return self.log_cut_chars + len(self.log)

    def append_log(self, text: str, **also) -> int:
        """Append in the database, so the log is never read whole to grow it.

        Past the cap (FC_BUILD_LOG_MAX_CHARS) the start is cut and counted, keeping the tail:
        the end of a log says why a build failed. `also` are more fields written in the same
        statement; with `backend_log_offset` among them, the append happens only if nobody
        copied that part of the backend's log meanwhile. Returns the rows changed (0 or 1).
        """
        text = text.replace("\x00", "")
        cap = settings.FC_BUILD_LOG_MAX_CHARS
        rows = Build.objects.filter(pk=self.pk)
        if "backend_log_offset" in also:
            rows = rows.filter(backend_log_offset=self.backend_log_offset)
        grown = Concat(F("log"), Value(text))
        # Both expressions read the row as it was: one statement, no lost update.
        return rows.update(
            log=Right(grown, cap),
            log_cut_chars=F("log_cut_chars") + Greatest(Length(F("log")) + len(text) - cap, 0),
            **also,
        )
