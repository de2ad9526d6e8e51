"""The dashboard's rows, rendered once for everyone who asks within a second.

Fifty people with the dashboard open, some reloading it, ask for fifty rows many times a
second, and rendering a row costs more than reading it. A row is the same for every person
but for the mark on their own deploys (data-mine, which the page's script tells them of): it
is rendered with each deploy's requester (data-requester) and the mark added for the person
asking, by a replace on the text. A row is kept ROW_SECONDS under its application's change
cursor and the minute (deploys/live.py): whatever changes what a row shows moves its cursor,
so a kept row is the one that would be rendered now, but for the holder's seconds running
(data-elapsed, which the page's script counts on from), behind by under ROW_SECONDS.

Each web process keeps its own (a local memory cache): nothing to share or to go stale
between processes, and a row is rendered at most once a second in each.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import caches
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from . import dashboard, live
from .models import Application

CACHE = "board-rows"  # settings.CACHES
ROW_SECONDS = 1


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
    # The template escaped what it rendered; the mark added is ours.
    return [
        Row(app, mark_safe(_mark_mine(html[app.pk], user)))  # noqa: S308
        for app in apps
        if app.pk in html  # one deleted meanwhile is left out
    ]


def _key(pk: int, cursors: live.BoardCursors) -> str | None:
    cursor = cursors.by_application.get(pk)
    if cursor is None:  # made after the cursors were read: rendered, not kept
        return None
    return f"{pk}-{live.micros(cursor)}-{cursors.minute}"


def _mark_mine(html: str, user) -> str:
    mine = f' data-requester="{getattr(user, "pk", None)}"'
    return html.replace(mine, f'{mine} data-mine="1"')
