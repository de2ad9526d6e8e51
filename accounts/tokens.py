"""Making, finding and revoking API tokens (models.ApiToken).

A key is "fc_" and 43 URL-safe characters from the system's random source: long enough that
a plain SHA-256 of it is all the database needs (no salt or slow hash: nobody can guess one
to match). It is returned once, by make(), and never stored, logged or shown again; a list
shows its first characters. An expired or revoked token authenticates nobody.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from . import audit
from .models import ApiToken

KEY_PREFIX = "fc_"
SHOWN = 11  # "fc_" and 8 characters
MAX_DAYS = 365
USE_NOTED_EVERY = timedelta(minutes=1)  # not a write per request


class TokenRefused(Exception):
    """Bad input for a new token: the message says which."""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make(user, name: str, days: int | None = None) -> tuple[ApiToken, str]:
    """A new token of `user`'s and its key (the only time the key is seen)."""
    name = (name or "").strip()
    if not name:
        raise TokenRefused("give the token a name: what it is for")
    if len(name) > ApiToken._meta.get_field("name").max_length:
        raise TokenRefused("a token's name is at most 100 characters")
    days = settings.FC_TOKEN_DAYS if days is None else days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise TokenRefused(f"a token lasts from 1 to {MAX_DAYS} days")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name,
        key_hash=digest(key),
        prefix=key[:SHOWN],
        expires_at=timezone.now() + timedelta(days=days),
    )
    audit.record(
        user,
        audit.TOKEN_MADE,
        subject=f"token {token.name} ({token.prefix}...)",
        change={"owner": user.get_username(), "expires_at": token.expires_at.isoformat()},
    )
    return token, key


def find(key: str) -> tuple[ApiToken | None, str]:
    """The live token with this key, or None and why not (for the 401)."""
    token = ApiToken.objects.select_related("user").filter(key_hash=digest(key)).first()
    if token is None:
        return None, "Invalid token."
    now = timezone.now()
    if token.revoked_at is not None:
        return None, "Token revoked."
    if token.expires_at <= now:
        return None, "Token expired."
    if token.last_used_at is None or now - token.last_used_at >= USE_NOTED_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token, ""


def revoke(token: ApiToken, *, by) -> bool:
    """Revoke it (its owner, or staff); False when it was already revoked."""
    revoked = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=by
    )
    if revoked:
        audit.record(
            by,
            audit.TOKEN_REVOKED,
            subject=f"token {token.name} ({token.prefix}...)",
            change={"owner": token.user.get_username()},
        )
    return bool(revoked)
