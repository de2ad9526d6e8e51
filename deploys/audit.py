"""What of the audit log (accounts.models.AuditEntry) a person may read, filtered: staff and
maintainers of every application read all of it; a maintainer of some, their applications'
entries; anyone else nothing (NotAllowed, a 403)."""

from __future__ import annotations

from accounts.audit import ACTIONS
from accounts.models import AuditEntry
from fatcontroller.text import text_problem

from . import roles
from .models import Application

SHOWN = 200  # the newest that match


class BadFilter(ValueError):
    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__(errors)


def readable(user):
    if roles.rank(user, None) >= roles.MAINTAINER:
        return AuditEntry.objects.all()
    mine = [a.pk for a in Application.objects.all() if roles.rank(user, a) >= roles.MAINTAINER]
    if not mine:
        raise roles.NotAllowed("You may not read the audit log: it needs maintainer or staff.")
    return AuditEntry.objects.filter(application_id__in=mine)


def entries(user, *, action: str = "", application: str = "", actor: str = "") -> list:
    """The newest SHOWN entries `user` may read, by action, application slug and actor name."""
    errors = {}
    if action and action not in ACTIONS:
        errors["action"] = [f"must be one of {', '.join(ACTIONS)}"]
    if any(len(value) > 150 or text_problem(value) for value in (application, actor)):
        errors["filter"] = ["a filter is at most 150 characters, with no NUL"]
    if errors:
        raise BadFilter(errors)
    found = readable(user).select_related("application")
    if action:
        found = found.filter(action=action)
    if application:
        found = found.filter(application__slug=application)
    if actor:
        found = found.filter(actor_name=actor)
    return list(found[:SHOWN])


def as_data(entry: AuditEntry) -> dict:
    return {
        "id": entry.pk,
        "at": entry.at.isoformat().replace("+00:00", "Z"),
        "actor": entry.actor_name,
        "address": entry.address,
        "action": entry.action,
        "application": entry.application.slug if entry.application_id else None,
        "subject": entry.subject,
        "change": entry.change,
    }
