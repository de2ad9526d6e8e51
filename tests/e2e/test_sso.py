"""Single sign-on end to end, in the browser: Fat Controller served by pytest-django's
live_server (a thread of this process, on the test database) with its OIDC settings pointing
at a real OpenID provider in a process of its own (tests/oidc_provider: django-oauth-toolkit).
Nothing of the protocol is mocked: the browser follows the redirects between the two, and the
app asks the provider itself for the tokens, its keys and the person's claims.

The app is on http://localhost:PORT and the provider on http://127.0.0.1:PORT2, so the two
keep separate cookies.
"""

import re

import pytest
from axes.models import AccessFailureLog
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import expect

from accounts import audit, oidc
from accounts.models import AuditEntry
from deploys import roles
from deploys.models import Application, Role, RoleGrant
from fatcontroller import sso
from tests.oidc_provider import ALLOWED_DOMAIN, ANN, PASSWORD, ZED, running_provider

from .conftest import EXPECT_TIMEOUT_MS, LAPTOP

SLUG = "sso-shop"


@pytest.fixture(scope="module")
def provider(live_server, tmp_path_factory):
    with running_provider(
        tmp_path_factory.mktemp("oidc-provider"), f"{live_server.url}/oidc/callback/"
    ) as running:
        yield running


@pytest.fixture
def sso_on(settings, provider):
    settings.FC_OIDC_ISSUER = provider.issuer
    settings.FC_OIDC_CLIENT_ID = provider.client_id
    settings.FC_OIDC_CLIENT_SECRET = provider.client_secret
    settings.FC_OIDC_SCOPES = "openid email profile groups"
    settings.FC_OIDC_ALLOWED_DOMAINS = [ALLOWED_DOMAIN]
    settings.FC_OIDC_GROUPS_CLAIM = "groups"
    settings.AUTHENTICATION_BACKENDS = sso.authentication_backends(
        issuer=provider.issuer,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        local_passwords=True,
    )
    oidc.forget_provider()
    yield provider
    oidc.forget_provider()


@pytest.fixture(scope="module", autouse=True)
def orm_beside_playwright():
    """Playwright's sync API runs an event loop in this thread, and Django then refuses the
    ORM calls made here (the tests' own, and the database's flush after each): they are
    plain blocking calls, so that is safe. For the module, so the flush is covered too."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture
def page(browser, live_server):
    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = browser.new_context(base_url=live_server.url, viewport=LAPTOP)
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in_at_the_provider(page, live_server, provider, person) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(re.escape(live_server.url) + r"/login/"))
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page).to_have_url(re.compile(re.escape(provider.url) + r"/login/"))
    page.get_by_label("Provider user name").fill(person.username)
    page.get_by_label("Provider password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in at the provider").click()


def test_sso_logs_in_with_the_groups_of_the_claim_and_their_roles(
    transactional_db, sso_on, page, live_server
):
    application = Application.objects.create(
        slug=SLUG, name="SSO shop", git_remote_url="/nowhere.git", default_branch="main"
    )
    # The grant is on a group the person is not in here yet: the claim puts them in it.
    RoleGrant.objects.create(group=Group.objects.create(name="release-team"), role=Role.DEPLOYER)
    stale = Group.objects.create(name="left-long-ago")

    sign_in_at_the_provider(page, live_server, sso_on, ANN)

    expect(page).to_have_url(f"{live_server.url}/")
    expect(page.locator("header")).to_contain_text(ANN.email)
    board = page.locator(f'section.application[data-slug="{SLUG}"]')
    expect(board.locator("form.queue-form")).to_be_visible()  # a deployer's form

    user = get_user_model().objects.get(email=ANN.email)
    assert user.username == ANN.email
    assert (user.first_name, user.last_name) == (ANN.first_name, ANN.last_name)
    assert not user.has_usable_password()
    assert sorted(user.groups.values_list("name", flat=True)) == sorted(ANN.groups)
    assert not stale.user_set.exists()
    assert roles.role_name(user, application) == "deployer"
    assert roles.may(user, "queue", application)
    logins = AuditEntry.objects.filter(action=audit.LOGIN, actor=user)
    assert logins.count() == 1
    assert not AuditEntry.objects.filter(action=audit.LOGIN_FAILED).exists()


def test_sso_refuses_an_address_outside_the_allowed_domains(
    transactional_db, sso_on, page, live_server
):
    sign_in_at_the_provider(page, live_server, sso_on, ZED)

    expect(page).to_have_url(re.compile(re.escape(live_server.url) + r"/login/"))
    expect(page.locator("#flash")).to_contain_text(
        f"Single sign-on did not log you in: {ZED.email} may not log in here: "
        f"only addresses at {ALLOWED_DOMAIN}."
    )
    expect(page.get_by_role("button", name="Log out")).to_have_count(0)
    page.goto("/")  # still not logged in: the dashboard sends the browser to the login page
    expect(page).to_have_url(re.compile(re.escape(live_server.url) + r"/login/"))

    assert not get_user_model().objects.filter(email=ZED.email).exists()
    failed = list(AuditEntry.objects.filter(action=audit.LOGIN_FAILED))
    assert [(entry.actor, entry.subject) for entry in failed] == [(None, ZED.email)]
    assert failed[0].change["via"] == "sso"
    assert "only addresses at" in failed[0].change["why"]
    assert not AuditEntry.objects.filter(action=audit.LOGIN).exists()
    # django-axes counts it under the address tried, not under "no name" for everyone.
    assert list(AccessFailureLog.objects.values_list("username", flat=True)) == [ZED.email]
    assert sso_on.client_secret not in page.content()
