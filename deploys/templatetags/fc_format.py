"""Durations in templates, in lib.durations' words: "3 min 12 s", "1 h 5 min", "1 d 1 h"."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

from lib.durations import in_words

register = template.Library()


@register.filter
def duration(value: timedelta | float | None) -> str:
    return "" if value is None else in_words(value)


@register.filter
def took(deploy) -> str:
    """How long a deploy held the slot."""
    if deploy.started_at and deploy.finished_at:
        return duration(deploy.finished_at - deploy.started_at)
    return ""


@register.filter
def running_for(started: datetime | None) -> str:
    return duration(timezone.now() - started) if started else ""


@register.filter
def epoch(when: datetime | None) -> str:
    """Seconds since the epoch, to the millisecond: for a kept row's clock to be set from
    (deploys/board_rows.py)."""
    return f"{when.timestamp():.3f}" if when else ""


@register.filter
def seconds_since(started: datetime | None) -> int | str:
    """Whole seconds since `started`, for the page's script to count on from (data-elapsed):
    the live polls answer 304 while the words change every second (deploys/live.py)."""
    return max(int((timezone.now() - started).total_seconds()), 0) if started else ""
