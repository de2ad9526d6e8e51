"""Single sign-on through an OpenID Connect provider (mozilla-django-oidc), on when
FC_OIDC_ISSUER is set (settings.py, fatcontroller/sso.py).

The authorization code flow with PKCE: /oidc/authenticate/ sends the browser to the provider,
which sends it back to /oidc/callback/; from there this process asks the provider itself for
the tokens, checks the ID token's signature against the provider's keys (RS256), and reads
the person's claims from its userinfo endpoint. The endpoints come from the issuer's discovery
document, fetched at the first SSO login of each process and kept: a provider that is down
then costs SSO logins a clear message, never the start of the process or a password login.

Who may come in: an address the provider says is verified (or does not say otherwise), in
FC_OIDC_ALLOWED_DOMAINS when that is set. A person is found by their address (so an account
made by hand with the same address is theirs) or made, named by the address, with no usable
password. With FC_OIDC_GROUPS_CLAIM, their Django groups are set at each login to exactly
the claim's values (missing groups made), so the RoleGrants on those groups are their roles.

A refusal is said on the login page, and leaves one failed-login entry in the audit log (the
address tried and why, through Django's user_login_failed: accounts/audit.py). The client
secret goes to the provider's token endpoint and nowhere else: no log, no page, no message.
"""

from __future__ import annotations

import logging
import re
import threading

import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import SuspiciousOperation
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from . import audit

log = logging.getLogger(__name__)

SIGN_ALGO = "RS256"  # what every OpenID provider must offer; the keys come from its JWKS
ENDPOINTS = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}
GROUP_NAME = 150  # Group.name's max_length
DID_NOT_LOG_IN = "Single sign-on did not log you in"


class ProviderProblem(Exception):
    """The provider could not be asked, or its answer did not check out: said to the person
    without detail, logged with it."""


def enabled() -> bool:
    return bool(settings.FC_OIDC_ISSUER)


# ------------------------------------------------------------------ discovery

_documents: dict[str, dict] = {}
_documents_lock = threading.Lock()


def discovery_url(issuer: str) -> str:
    return f"{issuer}/.well-known/openid-configuration"


def provider() -> dict:
    """The issuer's discovery document, fetched once per process (a failure is not kept, so
    the next login asks again)."""
    issuer = settings.FC_OIDC_ISSUER
    with _documents_lock:
        if issuer in _documents:
            return _documents[issuer]
    url = discovery_url(issuer)
    try:
        response = requests.get(url, timeout=settings.FC_OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ProviderProblem(f"GET {url}: {exc}") from exc
    # OpenID Connect Discovery 1.0, section 4.3: the document must name the issuer it was
    # asked of, or it may be someone else's.
    said = str(document.get("issuer", "")).rstrip("/")
    if said != issuer:
        raise ProviderProblem(f"{url} names the issuer {said!r}, not {issuer!r}")
    missing = [key for key in ENDPOINTS.values() if not document.get(key)]
    if missing:
        raise ProviderProblem(f"{url} names no {', '.join(missing)}")
    with _documents_lock:
        _documents[issuer] = document
    return document


def forget_provider() -> None:
    """Fetch the discovery document again at the next login (tests; a moved provider)."""
    with _documents_lock:
        _documents.clear()


def setting(name: str, *default):
    """mozilla-django-oidc's settings, from Fat Controller's: the FC_OIDC_* variables and the
    discovered endpoints, so nothing in settings.py repeats them under the library's names."""
    ours = {
        "OIDC_RP_CLIENT_ID": lambda: settings.FC_OIDC_CLIENT_ID,
        "OIDC_RP_CLIENT_SECRET": lambda: settings.FC_OIDC_CLIENT_SECRET,
        "OIDC_RP_SCOPES": lambda: settings.FC_OIDC_SCOPES,
        "OIDC_RP_SIGN_ALGO": lambda: SIGN_ALGO,
        "OIDC_TIMEOUT": lambda: settings.FC_OIDC_TIMEOUT,
        "OIDC_USE_PKCE": lambda: True,
    }
    if name in ours:
        return ours[name]()
    if name in ENDPOINTS:
        return provider()[ENDPOINTS[name]]
    return import_from_settings(name, *default)


# ------------------------------------------------------------------ who may come in


class Refused(SuspiciousOperation):
    """This person may not log in here; the message says why, to them. Raised in the claims'
    checks, which the library calls inside its own `except SuspiciousOperation`: it logs the
    refusal and answers None, and Django then sends user_login_failed, once."""


def refuse(request, tried: str, why: str) -> Refused:
    setattr(request, audit.SSO_TRIED, tried)
    setattr(request, audit.SSO_REFUSED, why)
    return Refused(why)


def email_of(claims: dict) -> str:
    return str(claims.get("email") or "").strip()


def domain_allowed(email: str, allowed: list[str]) -> bool:
    """Is the address's domain one of `allowed` (lower-case; empty: any)? Exact domains: a
    subdomain is not its parent."""
    name, at, domain = email.rpartition("@")
    if not (name and at and domain):
        return False
    return not allowed or domain.lower() in allowed


def groups_in(claims: dict, claim: str) -> list[str]:
    """The group names a claim holds: a list of names (or one name); other values left out."""
    value = claims.get(claim)
    if value is None:
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list | tuple):
        log.warning("SSO claim %s is not a list of group names: ignored", claim)
        return []
    names = []
    for item in values:
        if isinstance(item, str) and item.strip() and len(item.strip()) <= GROUP_NAME:
            names.append(item.strip())
        else:
            log.warning("SSO claim %s: %r is not a group name: left out", claim, item)
    return sorted(set(names))


def set_groups(user, names: list[str]) -> None:
    """The user's groups become exactly `names`; a group new to Fat Controller is made."""
    with transaction.atomic():
        groups = [Group.objects.get_or_create(name=name)[0] for name in names]
        user.groups.set(groups)
    # deploys/roles.py keeps a user's grants on the object for the request: not these.
    user.__dict__.pop("_fc_role_ranks", None)


class SsoBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, with Fat Controller's settings and rules.

    Django makes a backend for every authenticate() and every request's user, password
    logins included, so nothing here asks the provider until an SSO callback does."""

    get_settings = staticmethod(setting)

    def __init__(self, *args, **kwargs):
        # The library's __init__ reads the endpoints, which would fetch the discovery
        # document for every request: read in authenticate() instead.
        self.UserModel = get_user_model()

    def _configure(self) -> None:
        self.OIDC_OP_TOKEN_ENDPOINT = setting("OIDC_OP_TOKEN_ENDPOINT")
        self.OIDC_OP_USER_ENDPOINT = setting("OIDC_OP_USER_ENDPOINT")
        self.OIDC_OP_JWKS_ENDPOINT = setting("OIDC_OP_JWKS_ENDPOINT")
        self.OIDC_RP_CLIENT_ID = setting("OIDC_RP_CLIENT_ID")
        self.OIDC_RP_CLIENT_SECRET = setting("OIDC_RP_CLIENT_SECRET")
        self.OIDC_RP_SIGN_ALGO = SIGN_ALGO
        self.OIDC_RP_IDP_SIGN_KEY = None

    def authenticate(self, request, **kwargs):
        # Only the callback view passes a nonce; a password login is not ours.
        if request is None or "nonce" not in kwargs or not enabled():
            return None
        try:
            self._configure()
            user = super().authenticate(request, **kwargs)
        except Refused:
            return None  # said already, on the request
        except (ProviderProblem, requests.RequestException, SuspiciousOperation) as exc:
            # Not the secret: the library's errors name the URL, status and the provider's
            # answer, never what was sent.
            log.warning("SSO login failed: %s", exc)
            refuse(request, "", "the single sign-on provider's answer did not check out")
            return None
        if user is None and not getattr(request, audit.SSO_REFUSED, ""):
            refuse(request, "", "the single sign-on provider did not say who you are")
        return user

    def verify_claims(self, claims):
        email = email_of(claims)
        if not email:
            raise refuse(self.request, "", "the single sign-on provider gave no email address")
        if claims.get("email_verified") is False:
            raise refuse(self.request, email, f"{email} is not verified at the provider")
        if not domain_allowed(email, settings.FC_OIDC_ALLOWED_DOMAINS):
            allowed = ", ".join(settings.FC_OIDC_ALLOWED_DOMAINS)
            raise refuse(
                self.request, email, f"{email} may not log in here: only addresses at {allowed}"
            )
        return True

    def filter_users_by_claims(self, claims):
        return self.UserModel.objects.filter(email__iexact=email_of(claims))

    def create_user(self, claims):
        email = email_of(claims)
        if len(email) > 150 or self.UserModel.objects.filter(username=email).exists():
            raise refuse(self.request, email, f"there is no account to give {email}: ask staff")
        user = self.UserModel.objects.create_user(email, email=email)  # no usable password
        return self.update_user(user, claims)

    def update_user(self, user, claims):
        if not user.is_active:
            raise refuse(self.request, email_of(claims), f"{user.get_username()} is disabled")
        first, last = names_in(claims)
        if (first, last) != (user.first_name, user.last_name):
            user.first_name, user.last_name = first, last
            user.save(update_fields=["first_name", "last_name"])
        if settings.FC_OIDC_GROUPS_CLAIM:
            set_groups(user, groups_in(claims, settings.FC_OIDC_GROUPS_CLAIM))
        return user


def names_in(claims: dict) -> tuple[str, str]:
    first = str(claims.get("given_name") or "").strip()
    last = str(claims.get("family_name") or "").strip()
    if not (first or last):
        first, _, last = str(claims.get("name") or "").strip().partition(" ")
    return first[:150], last[:150]


# ------------------------------------------------------------------ the two views

_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


class SsoStart(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: to the provider's login, with state, nonce and PKCE."""

    get_settings = staticmethod(setting)

    def __init__(self, **kwargs):
        # The library reads the endpoint here, at every construction: read in get() instead.
        super(OIDCAuthenticationRequestView, self).__init__(**kwargs)

    def get(self, request):
        if not enabled():
            raise Http404("single sign-on is off")
        try:
            self.OIDC_OP_AUTH_ENDPOINT = setting("OIDC_OP_AUTHORIZATION_ENDPOINT")
        except ProviderProblem as exc:
            log.warning("SSO login not started: %s", exc)
            messages.error(request, f"{DID_NOT_LOG_IN}: the provider did not answer.")
            return redirect("login")
        self.OIDC_RP_CLIENT_ID = settings.FC_OIDC_CLIENT_ID
        return super().get(request)


class SsoCallback(OIDCAuthenticationCallbackView):
    """/oidc/callback/: where the provider sends the browser back; logs the person in
    (django.contrib.auth.login, so the audit log's login entry) or says why not."""

    get_settings = staticmethod(setting)

    def get(self, request):
        if not enabled():
            raise Http404("single sign-on is off")
        return super().get(request)

    def login_failure(self):
        why = getattr(self.request, audit.SSO_REFUSED, "")
        error = self.request.GET.get("error", "")
        if why:
            text = f"{DID_NOT_LOG_IN}: {why}."
        elif _ERROR_CODE.fullmatch(error):
            text = f"{DID_NOT_LOG_IN}: the provider said {error}."
        else:
            text = f"{DID_NOT_LOG_IN}."
        messages.error(self.request, text)
        return redirect("login")
