"""The History page's query: every deploy, newest first, filtered, one page at a time.

Pagination is by keyset, not by offset: a page is "the PAGE_SIZE newest deploys matching the
filters whose id is below `before`". Each page is then one index range scan ending after
PAGE_SIZE + 1 rows (the extra row says whether an older page exists), whatever the page's
depth and however many rows the table holds; there is no COUNT, so no page number and no
"of N" (counting 100,000 rows on every request would cost more than the page itself). A page
reached by an "older" link also reads at most PAGE_SIZE + 1 ids above it, to find where the
newer page starts. Rows queued while someone pages do not shift the pages already built,
unlike OFFSET paging.

The indexes this leans on (see Deploy.Meta): (application, -id), (requester, -id), (state, -id)
and (-created_at); with no filter, the primary key, read backwards.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.contrib.auth.models import AbstractBaseUser

from lib.durations import in_words

from .models import Application, Deploy
from .states import ACTIVE_STATES, FINAL_STATES, SUCCESS_STATES

PAGE_SIZE = 50

# State filters that stand for several states; their names are not State values.
STATE_GROUPS: dict[str, frozenset[str]] = {
    "active": frozenset(ACTIVE_STATES),
    "final": frozenset(FINAL_STATES),
    "shipped": frozenset(SUCCESS_STATES),
}


# What the table shows, and no more: not the candidate's commits (a list per deploy), nor
# the application's or the person's other columns.
COLUMNS = (
    *("id", "branch", "mode", "note", "state", "created_at", "started_at", "finished_at"),
    *("application__slug", "requester__username"),
)


@dataclass(frozen=True)
class HistoryFilters:
    """Cleaned filters; None or "" means "any". Dates are whole days in UTC, both included."""

    application: Application | None = None
    requester: AbstractBaseUser | None = None
    state: str = ""  # a State value or a STATE_GROUPS name
    date_from: date | None = None
    date_to: date | None = None


@dataclass(frozen=True)
class HistoryRow:
    deploy: Deploy
    duration: str  # "" when the deploy has not both started and finished


@dataclass(frozen=True)
class HistoryPage:
    rows: list[HistoryRow]
    before: int | None  # the cursor this page was read from; None for the newest page
    older_before: int | None  # the cursor of the next older page; None when this is the last
    has_newer: bool  # deploys matching the filters exist above this page
    newer_before: int | None  # the newer page's cursor; None when that page is the newest

    @property
    def is_newest(self) -> bool:
        return not self.has_newer


def matching(filters: HistoryFilters):
    """The deploys matching the filters, unordered and unpaged."""
    deploys = Deploy.objects.all()
    if filters.application is not None:
        deploys = deploys.filter(application=filters.application)
    if filters.requester is not None:
        deploys = deploys.filter(requester=filters.requester)
    if filters.state in STATE_GROUPS:
        deploys = deploys.filter(state__in=sorted(STATE_GROUPS[filters.state]))
    elif filters.state:
        deploys = deploys.filter(state=filters.state)
    if filters.date_from is not None:
        deploys = deploys.filter(created_at__gte=_utc_midnight(filters.date_from))
    if filters.date_to is not None and filters.date_to < date.max:
        # Up to the end of that day: before the next day's midnight.
        deploys = deploys.filter(created_at__lt=_utc_midnight(filters.date_to + timedelta(days=1)))
    return deploys


def history_page(
    filters: HistoryFilters, before: int | None = None, size: int = PAGE_SIZE
) -> HistoryPage:
    """One page of the history: `size` deploys below `before` (or the newest), newest first.

    Two queries at most: the page (with its application and requester joined), and, for a
    page other than the newest, the ids above it.
    """
    deploys = matching(filters)
    page = deploys.select_related("application", "requester").only(*COLUMNS).order_by("-id")
    if before is not None:
        page = page.filter(id__lt=before)
    found = list(page[: size + 1])
    rows = [HistoryRow(d, human_duration(d.started_at, d.finished_at)) for d in found[:size]]
    older_before = found[size - 1].pk if len(found) > size else None

    has_newer, newer_before = False, None
    if before is not None:
        above = list(
            deploys.filter(id__gte=before).order_by("id").values_list("id", flat=True)[: size + 1]
        )
        has_newer = bool(above)
        # The newer page holds the `size` lowest ids above this one; its cursor is the next id.
        newer_before = above[size] if len(above) > size else None
    return HistoryPage(rows, before, older_before, has_newer, newer_before)


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def human_duration(started_at: datetime | None, finished_at: datetime | None) -> str:
    """How long a deploy ran, in lib.durations' words ("3 min 12 s"); "" without both ends."""
    if started_at is None or finished_at is None or finished_at < started_at:
        return ""
    return in_words(finished_at - started_at)
