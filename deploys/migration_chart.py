"""The migration page's chart: the share of an application's processes on ECS over time, as
SVG written on the server (no JavaScript, no build step).

Two step lines, from the start of the plan to now: on ECS at all (dual running, cut over or
done: solid) and on ECS only (cut over or done: dashed, so the two differ without colour).
A dot per move carries its own <title>. The chart is an image to assistive technology
(role="img", a <title> and a <desc> saying where the shares stand now); the page puts a table
of the same figures beside it. Every piece is built with format_html, which escapes what it
is given, so no text (a phase's name, an application's) is ever read as markup.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from clusters.models import MigrationState

from .migration_page import SharePoint

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 52, 16, 16, 52
SERIES = (
    # (field, label, css class, dash pattern)
    ("on_ecs", "on ECS (dual running, cut over or done)", "share-on-ecs", ""),
    ("ecs_only", "on ECS only (cut over or done)", "share-ecs-only", "6 4"),
)


def percent(share: float) -> str:
    return f"{round(share * 100)}%"


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def move_words(point: SharePoint) -> str:
    """'phase 2 (workers): planned to dual running', or the start."""
    move = point.move
    if move is None:
        return "before the first move"
    before = MigrationState(move.from_state).label.lower()
    after = MigrationState(move.to_state).label.lower()
    forced = " (forced)" if move.forced else ""
    return f"phase {move.phase.position} ({move.phase.name}): {before} to {after}{forced}"


def share_chart(points: list[SharePoint], now: datetime, *, subject: str) -> SafeString:
    """The SVG of `points` (oldest first) up to `now`; `subject` names whose processes."""
    title = f"Share of {subject}'s processes on ECS over time"
    if not points:
        return _svg(title, "No phases yet: nothing to chart.", [])
    start = points[0].at
    end = max(now, points[-1].at)
    if end - start < timedelta(minutes=1):  # a plan just made: give the lines some length
        end = start + timedelta(hours=1)
    span = (end - start).total_seconds()
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> str:
        return f"{LEFT + plot_w * (at - start).total_seconds() / span:.1f}"

    def y(share: float) -> str:
        return f"{TOP + plot_h * (1 - share):.1f}"

    last, moves = points[-1], len(points) - 1
    desc = (
        f"From {when(start)} to {when(end)}. Now {percent(last.on_ecs)} of the processes run "
        f"on ECS and {percent(last.ecs_only)} on ECS only, "
        f"after {moves} move{'s' if moves != 1 else ''}."
    )
    parts = []
    for share in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="#d8dde2" />'
                '<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                y(share),
                y(share),
                LEFT - 6,
                f"{float(y(share)) + 4:.1f}",
                percent(share),
            )
        )
    for at, anchor in ((start, "start"), (end, "end")):
        parts.append(
            format_html(
                '<text class="axis-time" x="{}" y="{}" text-anchor="{}" font-size="11">{}</text>',
                x(at),
                TOP + plot_h + 16,
                anchor,
                when(at),
            )
        )
    for name, label, css, dash in SERIES:
        d = f"M{x(start)},{y(getattr(points[0], name))}"
        for point in points[1:]:
            d += f" H{x(point.at)} V{y(getattr(point, name))}"
        d += f" H{x(end)}"
        parts.append(
            format_html(
                '<path class="{}" d="{}" fill="none" stroke="currentColor" stroke-width="2"'
                ' stroke-dasharray="{}"><title>{}</title></path>',
                css,
                d,
                dash or "none",
                label,
            )
        )
    for point in points[1:]:
        tip = (
            f"{when(point.at)}: {move_words(point)}: {percent(point.on_ecs)} on ECS, "
            f"{percent(point.ecs_only)} ECS only"
        )
        parts.append(
            format_html(
                '<circle class="move" cx="{}" cy="{}" r="3.5" fill="currentColor">'
                "<title>{}</title></circle>",
                x(point.at),
                y(point.on_ecs),
                tip,
            )
        )
    legend_y = HEIGHT - 12
    for index, (_, label, css, dash) in enumerate(SERIES):
        left = LEFT + index * 290
        parts.append(
            format_html(
                '<line class="{}" x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" '
                'stroke-width="2" stroke-dasharray="{}" />'
                '<text x="{}" y="{}" font-size="12">{}</text>',
                css,
                left,
                left + 24,
                legend_y - 4,
                legend_y - 4,
                dash or "none",
                left + 30,
                legend_y,
                label,
            )
        )
    return _svg(title, desc, parts)


def _svg(title: str, desc: str, parts: list[SafeString]) -> SafeString:
    return format_html(
        '<svg class="share-chart" xmlns="http://www.w3.org/2000/svg" role="img" '
        'viewBox="0 0 {} {}" width="{}" height="{}" '
        'aria-labelledby="share-chart-title share-chart-desc">'
        '<title id="share-chart-title">{}</title><desc id="share-chart-desc">{}</desc>{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        title,
        desc,
        format_html_join("", "{}", ((part,) for part in parts)),
    )
