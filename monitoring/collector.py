"""What /metrics shows from the database, read when Prometheus scrapes.

Every web process gives the same answer, whichever process did the work: deploys by state,
the queues, and the counters and histograms of monitoring.metrics. Four small queries per
scrape, each over an index or a table of a few hundred rows. Labels are application slugs,
states and the bounded labels of METRICS: never a URL, a branch or a person.

The collector is kept off prometheus_client's global REGISTRY, which workers and beat have
too: only /metrics runs these queries.
"""

from __future__ import annotations

import json
from collections import defaultdict

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from deploys.models import Application, Deploy
from deploys.states import FINAL_STATES, SUCCESS_STATES, State

from .metrics import METRICS, le_text
from .models import Counter, HistogramBucket


def outcome_of(state: str) -> str:
    """active (not finished), shipped, cancelled (a person stopped it) or failed."""
    if state not in FINAL_STATES:
        return "active"
    if state in SUCCESS_STATES:
        return "shipped"
    if state in (State.CANCELLED, State.ABANDONED):
        return "cancelled"
    return "failed"


class DatabaseCollector:
    def collect(self):
        yield from self._deploys()
        yield from self._queues()
        yield from self._counters()
        yield from self._histograms()

    def _deploys(self):
        family = GaugeMetricFamily(
            "fc_deploys",
            "Deploys in each state now, by application; outcome is active, shipped, "
            "cancelled or failed. Final states only grow.",
            labels=["application", "state", "outcome"],
        )
        rows = (
            Deploy.objects.values_list("application__slug", "state")
            .annotate(n=Count("id"))
            .order_by("application__slug", "state")
        )
        for slug, state, n in rows:
            family.add_metric([slug, state, outcome_of(state)], n)
        yield family

    def _queues(self):
        length = GaugeMetricFamily(
            "fc_queue_length", "Deploys waiting for the merge slot.", labels=["application"]
        )
        oldest = GaugeMetricFamily(
            "fc_queue_oldest_wait_seconds",
            "How long the deploy first in the queue has waited (0 with nobody waiting).",
            labels=["application"],
        )
        waiting = {
            row["application__slug"]: row
            for row in Deploy.objects.filter(state=State.QUEUED)
            .values("application__slug")
            .annotate(n=Count("id"), since=Min("created_at"))
            .order_by()
        }
        now = timezone.now()
        # Every application, so an empty queue is a 0 rather than a series that vanished.
        for slug in Application.objects.order_by("slug").values_list("slug", flat=True):
            row = waiting.get(slug)
            length.add_metric([slug], row["n"] if row else 0)
            wait = (now - row["since"]).total_seconds() if row else 0.0
            oldest.add_metric([slug], max(wait, 0.0))
        yield length
        yield oldest

    def _counters(self):
        families = {
            name: CounterMetricFamily(
                name.removesuffix("_total"), metric.help, labels=list(metric.labels)
            )
            for name, metric in METRICS.items()
            if metric.kind == "counter"
        }
        for name, labels, value in Counter.objects.order_by("name", "labels").values_list(
            "name", "labels", "value"
        ):
            family = families.get(name)
            if family is not None:  # a metric since removed from METRICS is not shown
                values = json.loads(labels)
                family.add_metric([values.get(key, "") for key in METRICS[name].labels], value)
        yield from families.values()

    def _histograms(self):
        # {(name, labels): {le: (count, total)}}
        series: dict[tuple[str, str], dict[str, tuple[int, float]]] = defaultdict(dict)
        for name, labels, le, n, total in HistogramBucket.objects.values_list(
            "name", "labels", "le", "count", "total"
        ):
            series[(name, labels)][le] = (n, total)
        for name, metric in METRICS.items():
            if metric.kind != "histogram":
                continue
            family = HistogramMetricFamily(name, metric.help, labels=list(metric.labels))
            for (series_name, labels), buckets in sorted(series.items()):
                if series_name != name:
                    continue
                # By value, not by name: a bucket bound since removed from METRICS still
                # counts, in the next bound up.
                cumulative = [
                    (le_text(bound), sum(n for le, (n, _) in buckets.items() if float(le) <= bound))
                    for bound in (*metric.buckets, float("inf"))
                ]
                values = json.loads(labels)
                family.add_metric(
                    [values.get(key, "") for key in metric.labels],
                    cumulative,
                    sum_value=sum(total for _, total in buckets.values()),
                )
            yield family


def render() -> bytes:
    """The text exposition: this process's own metrics (HTTP requests through
    django-prometheus, the Python process), then the database's."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    return generate_latest(REGISTRY) + generate_latest(database)
