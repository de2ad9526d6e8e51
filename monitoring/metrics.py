"""Counting what happens, in the database, so /metrics on any web process sees every worker.

Guarantees:

* One event costs one UPDATE (value = value + n through F()); the first event of a series
  inserts its row instead, and a race to insert falls back to the UPDATE. Nothing is read and
  written back, so counts from many processes add up.
* A metric written inside a transaction is written after it commits (``on_commit``), outside
  it: a rolled-back change counts nothing, and no counter row stays locked for the length of
  somebody else's transaction. Outside a transaction it is written at once.
* Counting never breaks the caller: a failed write is logged and dropped.
* Only the metrics declared in METRICS exist, with exactly their labels; a label value is
  cut to 100 characters and one that looks like a URL or holds credentials is refused, so no
  secret reaches a scrape.

What the code counts (call these, nothing else):

* ``count("fc_safety_net_rescues_total", step=...)``: the safety net picked a deploy up.
* ``record_state_left(state, entered_at, left_at=...)``: from `transition`, on every change.
* ``counts_errors(...)``: the decorator on the AWS and Jenkins error-mapping context managers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F

from .models import Counter, HistogramBucket

log = logging.getLogger(__name__)

# A state can last a second (merging a small branch) or a day (a queue behind a lock).
STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


METRICS = {
    metric.name: metric
    for metric in (
        Metric(
            "fc_safety_net_rescues_total",
            "counter",
            "Deploys the safety net picked up: a stalled step sent again (step is its state) "
            "or a free slot handed on (step=slot).",
            ("step",),
        ),
        Metric(
            "fc_jenkins_errors_total",
            "counter",
            "Calls to Jenkins that failed: kind unavailable (tried again) or refused "
            "(a person must act), and the HTTP status (none when Jenkins did not answer).",
            ("kind", "status"),
        ),
        Metric(
            "fc_aws_errors_total",
            "counter",
            "Calls to AWS (ECS, ECR) that failed: kind unavailable (tried again) or refused "
            "(a person must act).",
            ("kind",),
        ),
        Metric(
            "fc_step_duration_seconds",
            "histogram",
            "Seconds a deploy spent in a state, observed as it left the state.",
            ("state",),
            STEP_BUCKETS,
        ),
    )
}


def count(name: str, amount: int = 1, /, **labels: object) -> None:
    """Add `amount` to the counter `name` with these labels."""
    key = _labels_of(_metric(name, "counter"), labels)
    _after_commit(lambda: _add(Counter, {"name": name, "labels": key}, value=amount))


def observe(name: str, value: float, /, **labels: object) -> None:
    """Record one observation of the histogram `name` (seconds, say) with these labels."""
    metric = _metric(name, "histogram")
    key = _labels_of(metric, labels)
    le = bucket_of(metric, value)
    _after_commit(
        lambda: _add(HistogramBucket, {"name": name, "labels": key, "le": le}, count=1, total=value)
    )


def record_state_left(
    state: str, entered_at: Callable[[], datetime | None], *, left_at: datetime
) -> None:
    """Observe how long a deploy spent in `state`, which it is leaving at `left_at`.

    Called by `transition` inside its transaction; `entered_at` (the caller's: this module
    knows no deploys) is asked after the commit, off the row lock.
    """

    def write() -> None:
        entered = entered_at()
        if entered is not None:
            seconds = max((left_at - entered).total_seconds(), 0.0)
            metric = METRICS["fc_step_duration_seconds"]
            _add(
                HistogramBucket,
                {
                    "name": metric.name,
                    "labels": _labels_of(metric, {"state": state}),
                    "le": bucket_of(metric, seconds),
                },
                count=1,
                total=seconds,
            )

    _after_commit(write)


def counts_errors(name: str, errors: type[BaseException] | tuple[type[BaseException], ...]):
    """Decorate a context manager that maps a service's errors: each of `errors` leaving it is
    counted in `name` once. Labels come from the error: kind is "unavailable" when its
    `retryable` is true, else "refused"; status (if the metric has it) is its `status`."""
    metric = _metric(name, "counter")

    def decorate(make_context: Callable[..., contextlib.AbstractContextManager]):
        @functools.wraps(make_context)
        @contextlib.contextmanager
        def counted(*args, **kwargs) -> Iterator[None]:
            try:
                with make_context(*args, **kwargs):
                    yield
            except errors as exc:
                labels = {"kind": "unavailable" if getattr(exc, "retryable", False) else "refused"}
                if "status" in metric.labels:
                    labels["status"] = getattr(exc, "status", None) or "none"
                count(name, **labels)
                raise

        return counted

    return decorate


def bucket_of(metric: Metric, value: float) -> str:
    """The bucket an observation falls in, named by its upper bound as Prometheus writes it."""
    for bound in metric.buckets:
        if value <= bound:
            return le_text(bound)
    return "+Inf"


def le_text(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def labels_key(labels: dict[str, str]) -> str:
    """The canonical text of a label set: the same labels are always the same row."""
    return json.dumps(labels, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------- inside


def _metric(name: str, kind: str) -> Metric:
    metric = METRICS.get(name)
    if metric is None or metric.kind != kind:
        raise ValueError(f"there is no {kind} called {name!r} in monitoring.metrics.METRICS")
    return metric


def _labels_of(metric: Metric, labels: dict[str, object]) -> str:
    if set(labels) != set(metric.labels):
        raise ValueError(
            f"{metric.name} takes the labels {', '.join(metric.labels)}, not {', '.join(labels)}"
        )
    values = {key: str(value)[:100] for key, value in labels.items()}
    for key, value in values.items():
        # A label is scraped by anyone with the token and kept for months: never a URL,
        # which may carry user:password@, and never anything that looks like credentials.
        if "://" in value or "@" in value:
            raise ValueError(f"the label {key} of {metric.name} looks like a URL or credentials")
    return labels_key(values)


def _after_commit(write: Callable[[], None]) -> None:
    # robust: a failed metric write is logged by Django and never reaches the caller, nor
    # stops the other on_commit callbacks (the next step's task) from running.
    transaction.on_commit(functools.partial(_guarded, write), robust=True)


def _guarded(write: Callable[[], None]) -> None:
    try:
        write()
    except DatabaseError:
        log.warning("a metric could not be written", exc_info=True)


def _add(model, key: dict, **increments: float) -> None:
    """UPDATE ... SET field = field + n WHERE key; the first time, INSERT the row."""
    updates = {field: F(field) + amount for field, amount in increments.items()}
    if model.objects.filter(**key).update(**updates):
        return
    try:
        with transaction.atomic():
            model.objects.create(**key, **increments)
    except IntegrityError:
        # Another process inserted it between our UPDATE and INSERT: add to theirs.
        model.objects.filter(**key).update(**updates)
