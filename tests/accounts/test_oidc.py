"""Single sign-on's rules without the protocol (tests/e2e/test_sso.py goes through a real
provider): who may come in, the groups a claim gives, the settings that are refused at start,
the login page, and password logins turned off."""

import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.test import Client, RequestFactory

from accounts import audit, oidc
from accounts.models import AuditEntry
from deploys import roles
from deploys.models import Application, Role, RoleGrant
from fatcontroller import sso
from tests.embedded_server import BASE_DIR
from tests.people import PASSWORD, person

ISSUER = "https://id.example.test"
SSO_LINK = "Sign in with single sign-on"


@pytest.fixture
def sso_on(settings):
    settings.FC_OIDC_ISSUER = ISSUER
    settings.FC_OIDC_CLIENT_ID = "fat-controller"
    settings.FC_OIDC_CLIENT_SECRET = "the-client-secret-marker"
    settings.FC_OIDC_ALLOWED_DOMAINS = ["allowed.example"]
    settings.FC_OIDC_GROUPS_CLAIM = "groups"
    settings.AUTHENTICATION_BACKENDS = sso.authentication_backends(
        issuer=ISSUER, client_id="fat-controller", client_secret="s", local_passwords=True
    )
    return settings


@pytest.fixture
def backend():
    made = oidc.SsoBackend()
    made.request = RequestFactory().get("/oidc/callback/")
    return made


# ------------------------------------------------------------------ who may come in


@pytest.mark.parametrize(
    ("email", "allowed", "expected"),
    [
        ("ann@allowed.example", ["allowed.example"], True),
        ("Ann@ALLOWED.Example", ["allowed.example"], True),
        ("ann@elsewhere.example", ["allowed.example"], False),
        ("ann@sub.allowed.example", ["allowed.example"], False),  # exact domains only
        ("ann@allowed.example.evil", ["allowed.example"], False),
        ("ann@b.example", ["a.example", "b.example"], True),
        ("ann@anywhere.example", [], True),  # no list: any address the provider vouches for
        ("not-an-address", [], False),
        ("@allowed.example", ["allowed.example"], False),
    ],
)
def test_the_domain_check(email, allowed, expected):
    assert oidc.domain_allowed(email, allowed) is expected


def test_verify_claims_passes_an_allowed_address(sso_on, backend):
    assert backend.verify_claims({"email": "ann@allowed.example", "email_verified": True})
    assert not hasattr(backend.request, audit.SSO_REFUSED)


@pytest.mark.parametrize(
    ("claims", "said"),
    [
        ({"email": "zed@elsewhere.example"}, "zed@elsewhere.example may not log in here"),
        (
            {"email": "ann@allowed.example", "email_verified": False},
            "ann@allowed.example is not verified at the provider",
        ),
        ({"sub": "42"}, "the single sign-on provider gave no email address"),
    ],
)
def test_verify_claims_refuses_and_says_why(sso_on, backend, claims, said):
    with pytest.raises(oidc.Refused, match=said):
        backend.verify_claims(claims)
    assert said in getattr(backend.request, audit.SSO_REFUSED)
    assert getattr(backend.request, audit.SSO_TRIED) == claims.get("email", "")


@pytest.mark.django_db
def test_a_refused_login_is_one_failed_login_entry_with_the_address_and_why(sso_on, backend):
    with pytest.raises(oidc.Refused):
        backend.verify_claims({"email": "zed@elsewhere.example"})
    # What Django sends once its backends all said no (the library catches the Refused).
    from django.contrib.auth import signals

    signals.user_login_failed.send(
        sender="django.contrib.auth", credentials={"nonce": "n"}, request=backend.request
    )
    entry = AuditEntry.objects.get(action=audit.LOGIN_FAILED)
    assert (entry.actor, entry.actor_name, entry.subject) == (
        None, "zed@elsewhere.example", "zed@elsewhere.example",
    )  # fmt: skip
    assert (
        entry.change["via"] == "sso"
        and "only addresses at allowed.example" in (entry.change["why"])
    )
    assert audit.tried_name(backend.request, {"nonce": "n"}) == "zed@elsewhere.example"


# ------------------------------------------------------------------ the groups a claim gives


@pytest.mark.django_db
def test_the_groups_claim_replaces_the_users_groups_and_their_grants_become_roles(sso_on, backend):
    application = Application.objects.create(
        slug="shop", name="Shop", git_remote_url="/nowhere.git", default_branch="main"
    )
    user = person("ann@allowed.example", email="ann@allowed.example")
    old = Group.objects.create(name="old-team")
    user.groups.add(old)
    RoleGrant.objects.create(group=Group.objects.create(name="release-team"), role=Role.DEPLOYER)
    RoleGrant.objects.create(group=old, role=Role.MAINTAINER)
    assert roles.role_name(user, application) == "maintainer"

    backend.update_user(user, {"email": user.email, "groups": ["release-team", "brand-new"]})

    assert sorted(user.groups.values_list("name", flat=True)) == ["brand-new", "release-team"]
    assert Group.objects.filter(name="brand-new").exists()  # made
    assert Group.objects.filter(name="old-team").exists()  # left, only without her
    assert roles.role_name(user, application) == "deployer"  # not the stale maintainer
    assert roles.may(user, "queue", application) and not roles.may(user, "lock", application)


@pytest.mark.django_db
def test_no_groups_claim_empties_the_groups_and_no_setting_leaves_them(settings, sso_on, backend):
    user = person("ann@allowed.example", email="ann@allowed.example")
    user.groups.add(Group.objects.create(name="release-team"))

    settings.FC_OIDC_GROUPS_CLAIM = ""
    backend.update_user(user, {"email": user.email, "groups": ["other"]})
    assert list(user.groups.values_list("name", flat=True)) == ["release-team"]

    settings.FC_OIDC_GROUPS_CLAIM = "groups"
    backend.update_user(user, {"email": user.email})
    assert not user.groups.exists()


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (["b", "a", "a"], ["a", "b"]),
        ("solo", ["solo"]),
        (["ok", 7, "", "x" * 151, None], ["ok"]),
        ({"not": "a list"}, []),
        (None, []),
    ],
)
def test_groups_in_keeps_only_group_names(value, names):
    assert oidc.groups_in({"groups": value}, "groups") == names


@pytest.mark.django_db
def test_a_new_person_is_named_by_their_address_with_no_password(sso_on, backend):
    user = backend.create_user(
        {"email": "bea@allowed.example", "name": "Bea Example", "groups": ["qa"]}
    )
    assert (user.username, user.email) == ("bea@allowed.example", "bea@allowed.example")
    assert (user.first_name, user.last_name) == ("Bea", "Example")
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == ["qa"]


@pytest.mark.django_db
def test_a_disabled_account_is_refused(sso_on, backend):
    user = person("ann", email="ann@allowed.example", is_active=False)
    with pytest.raises(oidc.Refused, match="ann is disabled"):
        backend.update_user(user, {"email": "ann@allowed.example"})


# ------------------------------------------------------------------ settings


def test_settings_backends_follow_the_settings():
    def backends(**changes):
        values = dict(issuer="", client_id="", client_secret="", local_passwords=True)
        return sso.authentication_backends(**{**values, **changes})

    assert backends() == [sso.AXES, sso.PASSWORDS]
    on = {"issuer": ISSUER, "client_id": "id", "client_secret": "secret"}
    assert backends(**on) == [sso.AXES, sso.PASSWORDS, sso.SSO]
    assert backends(**on, local_passwords=False) == [sso.AXES, sso.SSO]
    with pytest.raises(ImproperlyConfigured, match="FC_OIDC_CLIENT_ID and FC_OIDC_CLIENT_SECRET"):
        backends(issuer=ISSUER)
    with pytest.raises(ImproperlyConfigured, match="so FC_OIDC_CLIENT_SECRET must be set"):
        backends(issuer=ISSUER, client_id="id")
    with pytest.raises(ImproperlyConfigured, match="nobody could log in"):
        backends(local_passwords=False)
    with pytest.raises(ImproperlyConfigured, match="https:// URL"):
        backends(**{**on, "issuer": "id.example.test"})


def test_an_issuer_without_its_client_stops_the_start_and_never_shows_the_secret():
    env = {
        **os.environ,
        "FC_OIDC_ISSUER": ISSUER,
        "FC_OIDC_CLIENT_SECRET": "the-client-secret-marker",
    }
    env.pop("FC_OIDC_CLIENT_ID", None)
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "ImproperlyConfigured: FC_OIDC_ISSUER is set, so FC_OIDC_CLIENT_ID must be" in output
    assert "the-client-secret-marker" not in output


# ------------------------------------------------------------------ the login page


@pytest.mark.django_db
def test_the_login_page_has_the_sso_link_only_when_sso_is_on(settings, client):
    page = client.get("/login/").content.decode()
    assert SSO_LINK not in page and 'name="password"' in page
    assert client.get("/oidc/authenticate/").status_code == 404  # off: not there at all

    settings.FC_OIDC_ISSUER = ISSUER
    page = client.get("/login/?next=/history/").content.decode()
    assert SSO_LINK in page and 'href="/oidc/authenticate/?next=/history/"' in page
    assert 'name="password"' in page  # passwords still on
    assert "the-client-secret-marker" not in page


@pytest.mark.django_db
def test_the_sso_urls_need_no_login(sso_on, client, monkeypatch):
    """Reached before anyone is logged in: not sent to the login page by
    LoginRequiredMiddleware (a provider that is down is said, on the login page)."""

    def provider_down():
        raise oidc.ProviderProblem("GET .../.well-known/openid-configuration: refused")

    monkeypatch.setattr(oidc, "provider", provider_down)
    answer = client.get("/oidc/authenticate/", follow=True)
    assert answer.redirect_chain == [("/login/", 302)]
    assert "Single sign-on did not log you in: the provider did not answer." in (
        answer.content.decode()
    )
    answer = client.get("/oidc/callback/?error=access_denied&state=s", follow=True)
    assert answer.redirect_chain == [("/login/", 302)]
    assert "the provider said access_denied" in answer.content.decode()


@pytest.mark.django_db
def test_the_admins_login_is_the_login_page_while_local_passwords_are_off(settings):
    # Someone logged in who may not use the admin is sent to its login form, which asks for
    # a password ("log in as another account").
    viewer = Client()
    viewer.force_login(person("vera", "viewer"))
    assert viewer.get("/admin/").url.startswith("/admin/login/")
    assert 'name="password"' in viewer.get("/admin/login/").content.decode()

    settings.FC_LOCAL_PASSWORDS = False
    settings.FC_OIDC_ISSUER = ISSUER
    answer = viewer.get("/admin/login/", {"next": "/admin/deploys/"})
    assert answer.status_code == 302
    assert answer["Location"] == "/login/?next=%2Fadmin%2Fdeploys%2F"
    page = viewer.get(answer["Location"]).content.decode()
    assert SSO_LINK in page and 'name="password"' not in page


@pytest.mark.django_db
def test_local_passwords_off_refuses_a_password_login(settings):
    person("ann", "viewer")
    assert Client().post("/login/", {"username": "ann", "password": PASSWORD}).status_code == 302

    settings.FC_LOCAL_PASSWORDS = False
    settings.FC_OIDC_ISSUER = ISSUER
    settings.AUTHENTICATION_BACKENDS = sso.authentication_backends(
        issuer=ISSUER, client_id="id", client_secret="secret", local_passwords=False
    )
    visitor = Client()
    page = visitor.get("/login/").content.decode()
    assert SSO_LINK in page and 'name="password"' not in page
    answer = visitor.post("/login/", {"username": "ann", "password": PASSWORD})
    assert answer.status_code == 200  # the form again, not a redirect
    assert "_auth_user_id" not in visitor.session
    assert visitor.get("/").status_code == 302  # still sent to log in
    assert AuditEntry.objects.filter(action=audit.LOGIN_FAILED, subject="ann").count() == 1
