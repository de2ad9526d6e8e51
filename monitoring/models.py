"""What the monitoring keeps in the database, so that every process sees every other.

Workers and beat run on other machines than the web process that answers /healthz and
/metrics: what they did is only visible to it if it is a row. Counters and histogram buckets
are incremented with one UPDATE ... SET value = value + n (F() expressions), never read,
changed and written back, so two processes counting at once both count.
"""

from django.db import models


class Heartbeat(models.Model):
    """When a worker or beat on a host last did something."""

    class Role(models.TextChoices):
        WORKER = "worker", "Worker"
        BEAT = "beat", "Beat"

    role = models.CharField(max_length=20, choices=Role.choices)
    host = models.CharField(max_length=255, help_text="The Celery node name or the host name.")
    seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["role", "host"], name="one_heartbeat_per_role_host")
        ]
        indexes = [models.Index(fields=["role", "-seen_at"], name="heartbeat_role_newest")]

    def __str__(self) -> str:
        return f"{self.role} on {self.host} at {self.seen_at:%H:%M:%S}"


class Counter(models.Model):
    """One series of a counter: a metric name, its labels (canonical JSON), its value."""

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=500, help_text='Sorted-key JSON: {"step":"building"}.')
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="one_counter_per_series")
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"


class HistogramBucket(models.Model):
    """One bucket of a histogram series, not cumulative: the observations that fell between
    the bound below and `le`, and their sum. One observation updates exactly one row; the
    cumulative buckets Prometheus wants are added up when scraped."""

    name = models.CharField(max_length=100)
    labels = models.CharField(max_length=500)
    le = models.CharField(
        max_length=20, help_text='The upper bound, as Prometheus writes it: "60.0", "+Inf".'
    )
    count = models.BigIntegerField(default=0)
    total = models.FloatField(default=0.0, help_text="The sum of the observations in it.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["name", "labels", "le"], name="one_bucket_per_series_bound"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} le={self.le}: {self.count}"
