"""Durations as people say them: "3 min 12 s", "1 h 5 min"."""

from datetime import datetime, timedelta

from django import template
from django.utils import timezone

register = template.Library()


@register.filter
def duration(value) -> str:
    if value is None:
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    seconds = max(seconds, 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {seconds} s"
    return f"{seconds} s"


@register.filter
def took(deploy) -> str:
    """How long a deploy held the slot."""
    if deploy.started_at and deploy.finished_at:
        return duration(deploy.finished_at - deploy.started_at)
    return ""


@register.filter
def running_for(started: datetime | None) -> str:
    return duration(timezone.now() - started) if started else ""
