"""Every application's finished deploys as the dashboard reads them: its last one (the
outcome its row shows) and the durations of its latest runs (the start estimates).

One query each, whatever the number of applications, and none ranks the whole history (a
window over 100,000 finished deploys costs more than the page): the applications' own query
carries, per application, a subquery served by the (application, -finished_at) index that
finds the last finished deploy and how far back the latest runs go, and the next queries
fetch just those rows.
"""

from __future__ import annotations

import statistics
from datetime import timedelta

from django.core.cache import cache
from django.db.models import OuterRef, Q, QuerySet, Subquery

from .models import Application, Deploy
from .states import State

# Finished deploys whose durations make the estimate: enough to smooth, few enough to follow
# a change in the build's length.
DURATION_SAMPLE = 20
DURATIONS_KEPT_SECONDS = 60
# Ended before running long enough to say how long a deploy takes.
NOT_A_RUN = (State.CANCELLED, State.MERGE_CONFLICT)
# What a row shows of the last finished deploy.
LAST_FIELDS = (
    "application_id",
    "branch",
    "mode",
    "state",
    "started_at",
    "finished_at",
    "requester",
    "requester__username",
)


def _finished() -> QuerySet:
    return Deploy.objects.filter(finished_at__isnull=False).order_by("-finished_at")


def _runs() -> QuerySet:
    return _finished().exclude(state__in=NOT_A_RUN).filter(started_at__isnull=False)


def with_finished_marks(applications: QuerySet) -> QuerySet:
    """The applications, each with `last_finished_id` and `durations_from` (the finish of
    the oldest run in its duration sample; None: it has fewer runs, take them all)."""
    return applications.annotate(
        last_finished_id=Subquery(_finished().filter(application=OuterRef("pk")).values("pk")[:1]),
        durations_from=Subquery(
            _runs()
            .filter(application=OuterRef("pk"))
            .values("finished_at")[DURATION_SAMPLE - 1 : DURATION_SAMPLE]
        ),
    )


def last_finished(applications: list[Application]) -> dict[int, Deploy]:
    """Each marked application's last finished deploy, by application id."""
    ids = [app.last_finished_id for app in applications if app.last_finished_id]
    if not ids:
        return {}
    rows = Deploy.objects.filter(pk__in=ids).select_related("requester").only(*LAST_FIELDS)
    return {deploy.application_id: deploy for deploy in rows}


def _key(application_id: int) -> str:
    return f"dashboard:durations:{application_id}"


def typical_durations(applications: list[Application]) -> dict[int, timedelta | None]:
    """Each marked application's median run of late, None without history. The durations
    change slowly, so each application's are kept for a minute; those not kept are read in
    one query."""
    found = cache.get_many([_key(app.pk) for app in applications])
    missing = [app for app in applications if _key(app.pk) not in found]
    if missing:
        read: dict[int, list[float]] = {app.pk: [] for app in missing}
        wanted = Q()
        for app in missing:
            since = Q(finished_at__gte=app.durations_from) if app.durations_from else Q()
            wanted |= Q(application_id=app.pk) & since
        rows = (
            _runs()
            .filter(wanted)
            .order_by("application_id", "-finished_at")
            .values_list("application_id", "started_at", "finished_at")
        )
        for app_id, start, end in rows:
            if len(read[app_id]) < DURATION_SAMPLE:  # ties at the oldest finish
                read[app_id].append((end - start).total_seconds())
        kept = {_key(app_id): seconds for app_id, seconds in read.items()}
        cache.set_many(kept, DURATIONS_KEPT_SECONDS)
        found.update(kept)
    return {
        app.pk: timedelta(seconds=statistics.median(seconds))
        if (seconds := found[_key(app.pk)])
        else None
        for app in applications
    }
