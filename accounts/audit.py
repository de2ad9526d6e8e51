"""The audit log: every action by a person, recorded once with who, when, from which address
(the request's, kept by AuditAddressMiddleware for the code below the view), on what, and the
change. Called by the actions themselves (deploys/actions.py, applications.py, the migration
move, role grants, tokens) and by Django's login signals, in the same transaction as the
change, so an action that fails leaves no entry and one that commits leaves exactly one.
"""

from __future__ import annotations

import contextvars

from django.contrib.auth import signals as auth_signals
from django.dispatch import receiver

from .models import AuditEntry

_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_address", default=None)

QUEUE, RETRY, CANCEL, ABANDON, RESTORE = "queue", "retry_build", "cancel", "abandon", "restore"
LOCK, UNLOCK, CONFIG_LOAD, PLAN_MOVE = "lock", "unlock", "config_load", "plan_move"
ROLE_GRANT, ROLE_REVOKE, TOKEN_MADE, TOKEN_REVOKED = (
    "role_grant", "role_revoke", "token_made", "token_revoked",
)  # fmt: skip
LOGIN, LOGIN_FAILED = "login", "login_failed"
ACTIONS = (QUEUE, RETRY, CANCEL, ABANDON, RESTORE, LOCK, UNLOCK, CONFIG_LOAD, PLAN_MOVE,
           ROLE_GRANT, ROLE_REVOKE, TOKEN_MADE, TOKEN_REVOKED, LOGIN, LOGIN_FAILED)  # fmt: skip


def record(actor, action: str, *, application=None, subject: str = "", change=None):
    """One entry. `actor` None (or not logged in) is Fat Controller itself or a command line
    with no user: kept as such."""
    person = actor if getattr(actor, "is_authenticated", False) else None
    name = person.get_username() if person is not None else _name_of(actor)
    return AuditEntry.objects.create(
        actor=person,
        actor_name=name[:150],
        address=_address.get(),
        action=action,
        application=application,
        subject=subject[:200],
        change=change or {},
    )


def _name_of(actor) -> str:
    return str(actor) if isinstance(actor, str) and actor else "fatcontroller"


class AuditAddressMiddleware:
    """Keeps the request's address for record() while the request runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _address.set(request.META.get("REMOTE_ADDR") or None)
        try:
            return self.get_response(request)
        finally:
            _address.reset(token)


@receiver(auth_signals.user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    record(user, LOGIN, subject=user.get_username())


# What a single sign-on refused here (accounts/oidc.py) leaves on the request, for the entry
# below and for django-axes: the address the provider gave, and why it was refused.
SSO_TRIED, SSO_REFUSED = "fc_sso_tried", "fc_sso_refused"


def tried_name(request, credentials=None) -> str | None:
    """The user name a login tried: the form's, or for a single sign-on the address the
    provider gave. Also django-axes' AXES_USERNAME_CALLABLE (settings.py), so its count of
    failures goes by the same name; without credentials, as axes does, the form's."""
    if credentials:
        name = credentials.get("username") or getattr(request, SSO_TRIED, None)
    else:
        name = getattr(request, "POST", {}).get("username")
    return str(name) if name else None


@receiver(auth_signals.user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    # Only the user name tried: never the password (Django masks it in credentials anyway).
    tried = (tried_name(request, credentials) or "")[:150]
    why = getattr(request, SSO_REFUSED, "")
    change = {"via": "sso", "why": why} if why else None
    record(tried or None, LOGIN_FAILED, subject=tried, change=change)
