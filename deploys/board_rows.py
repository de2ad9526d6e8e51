"""The dashboard's rows, rendered once for everyone until something in them changes.

Fifty people with the dashboard open, some reloading it, ask for fifty rows many times a
second, and rendering a row costs more than reading it. A row is kept under its
application's change cursor and the minute (deploys/live.py): whatever changes what a row
shows moves its cursor, and what moves with the clock moves with the minute (the estimates
are in minutes), so a kept row is the one that would be rendered now, but for two things set
on the way out, each by a replace on the text:
- the mark on the person's own deploys (data-mine, which the page's script tells them of):
  the row is rendered with each deploy's requester (data-requester);
- how long the holder has run, in seconds (data-elapsed, which the page's script counts on
  from) and in words: set from its start (data-started-at) and the clock now.

Each web process keeps its own (a local memory cache): nothing to share or to go stale
between processes, and a row is rendered at most once a minute in each while it is still.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

from django.core.cache import caches
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from lib.durations import in_words

from . import dashboard, live
from .models import Application

CACHE = "board-rows"  # settings.CACHES
# The minute in the key ends a row's life; this only lets the cache drop what is past.
ROW_SECONDS = 120
_ELAPSED = re.compile(
    r'<span class="elapsed" data-started-at="([0-9.]+)" data-elapsed="[0-9]*">[^<]*</span>'
)


@dataclass(frozen=True)
class Row:
    application: Application
    html: SafeString


def rows(user, cursors: live.BoardCursors, applications) -> list[Row]:
    """The rows of `applications` (in their order) as `user` sees them: the kept ones, and
    the others rendered from one dashboard.board() of them all."""
    apps = list(applications)
    keys = {app.pk: _key(app.pk, cursors) for app in apps}  # None: not to be kept
    cache = caches[CACHE]
    kept = cache.get_many([key for key in keys.values() if key])
    html = {pk: kept[key] for pk, key in keys.items() if key in kept}
    missing = [pk for pk in keys if pk not in html]
    if missing:
        made = {
            entry.application.pk: render_to_string("deploys/_board_row.html", {"b": entry})
            for entry in dashboard.board(Application.objects.filter(pk__in=missing))
        }
        cache.set_many({keys[pk]: text for pk, text in made.items() if keys[pk]}, ROW_SECONDS)
        html.update(made)
    now = clock()
    # The template escaped what it rendered; what is set on the way out is ours.
    return [
        Row(app, mark_safe(_set_clock(_mark_mine(html[app.pk], user), now)))  # noqa: S308
        for app in apps
        if app.pk in html  # one deleted meanwhile is left out
    ]


def clock() -> float:
    """Seconds since the epoch now (the tests hold it still)."""
    return time.time()


def _key(pk: int, cursors: live.BoardCursors) -> str | None:
    cursor = cursors.by_application.get(pk)
    if cursor is None:  # made after the cursors were read: rendered, not kept
        return None
    return f"{pk}-{live.micros(cursor)}-{cursors.minute}"


def _set_clock(html: str, now: float) -> str:
    def running(match: re.Match) -> str:
        started = match.group(1)
        seconds = max(math.floor(now - float(started)), 0)
        return (
            f'<span class="elapsed" data-started-at="{started}" data-elapsed="{seconds}">'
            f"{in_words(seconds)}</span>"
        )

    return _ELAPSED.sub(running, html)


def _mark_mine(html: str, user) -> str:
    mine = f' data-requester="{getattr(user, "pk", None)}"'
    return html.replace(mine, f'{mine} data-mine="1"')
