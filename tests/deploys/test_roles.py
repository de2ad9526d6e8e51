"""Who may do what (deploys/roles.py), through the pages and the API alike: every action
against every role, allowed or 403 with nothing changed; the buttons a person may not press
are not shown; every URL of the app is either read-only or in the table, so a new endpoint
without a rule fails here."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from deploys import roles
from deploys.models import Application, Deploy, DeployEvent, RoleGrant
from deploys.states import State
from tests.people import person

pytestmark = pytest.mark.django_db

# What each kind of person may do: (own deploy actions, someone else's, the application's).
ACTIONS = ("queue", "cancel", "abandon", "retry-build", "restore", "lock", "unlock")
ALLOWED = {
    "viewer": set(),
    "deployer-of-another-application": set(),
    "deployer": {"queue", "cancel", "abandon", "retry-build", "restore"},
    "deployer-on-someone-elses-deploy": {"queue", "restore"},
    "deployer-by-group": {"queue", "cancel", "abandon", "retry-build", "restore"},
    "maintainer": set(ACTIONS),
    "staff": set(ACTIONS),
}
# The state each deploy action is tried in (one it allows, so only the role can refuse).
STATE_FOR = {
    "cancel": State.QUEUED,
    "abandon": State.BUILD_FAILED,
    "retry-build": State.BUILD_FAILED,
    "restore": State.SUCCEEDED,
}


@pytest.fixture
def other_application(db):
    return Application.objects.create(slug="blog", name="Blog", git_remote_url="/nowhere.git")


def who(kind: str, application, other_application):
    """The person of `kind`, and the requester of the deploy they act on."""
    owner = person("dora", "deployer", application=application)
    if kind == "viewer":
        return person("vic", "viewer"), owner
    if kind == "deployer-of-another-application":
        return person("oz", "deployer", application=other_application), owner
    if kind == "deployer":
        return owner, owner
    if kind == "deployer-on-someone-elses-deploy":
        return person("dan", "deployer"), owner
    if kind == "deployer-by-group":
        shippers = Group.objects.create(name="shippers")
        RoleGrant.objects.create(group=shippers, role="deployer", application=application)
        member = person("gus")
        member.groups.add(shippers)
        return member, member
    if kind == "maintainer":
        return person("mia", "maintainer", application=application), owner
    return person("sam", is_staff=True), owner


def snapshot(application) -> tuple:
    application.refresh_from_db()
    return (
        list(Deploy.objects.order_by("pk").values_list("pk", "state", "requester_id")),
        DeployEvent.objects.count(),
        (application.locked, application.lock_reason),
    )


def attempt(surface: str, actor, action: str, application, deploy):
    """POST the action through the page (as its script does) or the API; the answer."""
    if surface == "api":
        client = APIClient()
        client.force_authenticate(actor)
        paths = {
            "queue": "/api/deploys/",
            "lock": f"/api/applications/{application.slug}/lock/",
            "unlock": f"/api/applications/{application.slug}/unlock/",
        }
        path = paths.get(action, f"/api/deploys/{deploy.pk}/{action}/")
        body = {"application": application.slug, "branch": "feature/clean-merge"}
        return client.post(path, {**body, "reason": "tests"}, format="json")
    client = Client()
    client.force_login(actor)
    paths = {
        "queue": "/deploys/queue/",
        "lock": f"/applications/{application.slug}/lock/",
        "unlock": f"/applications/{application.slug}/unlock/",
    }
    path = paths.get(action, f"/deploys/{deploy.pk}/{action}/")
    data = {"application": application.slug, "branch": "feature/clean-merge", "mode": "deploy"}
    return client.post(path, {**data, "reason": "tests"}, headers={"X-Requested-With": "fetch"})


@pytest.mark.parametrize("surface", ["page", "api"])
@pytest.mark.parametrize("kind", list(ALLOWED))
@pytest.mark.parametrize("action", ACTIONS)
def test_each_role_may_do_what_it_may_and_is_refused_the_rest(
    surface, kind, action, application, other_application
):
    actor, owner = who(kind, application, other_application)
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/tried",
        requester=owner,
        state=STATE_FOR.get(action, State.SUCCEEDED),
    )
    if action == "unlock":
        application.locked, application.lock_reason = True, "tests"
        application.save()
    before = snapshot(application)

    answer = attempt(surface, actor, action, application, deploy)

    if action in ALLOWED[kind]:
        assert answer.status_code != 403, answer.content
    else:
        assert answer.status_code == 403, answer.content
        assert snapshot(application) == before  # nothing changed
        assert "You may not " in said(surface, answer)
        assert f"on {application.slug}, and you are " in said(surface, answer)


def said(surface: str, answer) -> str:
    """Why it was refused: the API's error, a button's JSON, or a page (the queue form's
    dashboard, the lock's 403 page)."""
    if surface == "api":
        return answer.json()["errors"]["detail"][0]
    if answer["Content-Type"].startswith("application/json"):
        return answer.json()["message"]
    return answer.content.decode()


def test_a_viewer_sees_no_button_it_may_not_press(client, application):
    viewer = person("vic", "viewer")
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", requester=viewer, state=State.BUILD_FAILED
    )
    client.force_login(viewer)
    for path, absent in (
        ("/", 'action="/deploys/queue/"'),
        (f"/applications/{application.slug}/", f"/applications/{application.slug}/lock/"),
        (f"/deploys/{deploy.pk}/", f"/deploys/{deploy.pk}/retry-build/"),
    ):
        page = client.get(path)
        assert page.status_code == 200
        assert absent not in page.content.decode(), path
    assert actions_offered(viewer, deploy) == []

    maintainer = person("mia", "maintainer")
    client.force_login(maintainer)
    assert 'action="/deploys/queue/"' in client.get("/").content.decode()
    assert (
        f"/deploys/{deploy.pk}/retry-build/"
        in client.get(f"/deploys/{deploy.pk}/").content.decode()
    )
    assert actions_offered(maintainer, deploy) == ["abandon", "cancel", "retry-build"]


def actions_offered(user, deploy) -> list[str]:
    api = APIClient()
    api.force_authenticate(user)
    return api.get(f"/api/deploys/{deploy.pk}/").json()["actions"]


def test_the_default_role_is_a_setting(settings, application):
    nobody = person("nora")
    assert roles.role_name(nobody, application) == "viewer"
    settings.FC_DEFAULT_ROLE = "deployer"
    nobody = get_user_model().objects.get(pk=nobody.pk)  # a new request: read again
    assert roles.may(nobody, "queue", application)
    assert not roles.may(nobody, "lock", application)


def test_grant_gives_and_takes_roles_on_one_or_every_application(application, other_application):
    person("ann")
    out = io.StringIO()
    call_command("grant", "ann", "maintainer", "--app", "demo-shop", stdout=out)
    assert out.getvalue().strip() == "ann is maintainer on demo-shop"
    call_command("grant", "ops", "deployer", "--group", stdout=io.StringIO())
    ann = get_user_model().objects.get(username="ann")
    assert roles.role_name(ann, application) == "maintainer"
    assert roles.role_name(ann, other_application) == "viewer"
    ann.groups.add(Group.objects.get(name="ops"))
    ann = get_user_model().objects.get(pk=ann.pk)
    assert roles.role_name(ann, other_application) == "deployer"

    call_command("grant", "ann", "maintainer", "--app", "demo-shop", "--revoke", stdout=out)
    ann = get_user_model().objects.get(pk=ann.pk)
    assert roles.role_name(ann, application) == "deployer"
    with pytest.raises(CommandError, match="there is no user called 'zed'"):
        call_command("grant", "zed", "viewer")
    with pytest.raises(CommandError, match="there is no application called 'nope'"):
        call_command("grant", "ann", "viewer", "--app", "nope")


def test_a_migration_move_needs_a_maintainer():
    from clusters.models import MigrationMove
    from tests.migration_world import make_world

    world = make_world()
    deployer = person("dora", "deployer")
    before = MigrationMove.objects.count()
    api = APIClient()
    api.force_authenticate(deployer)
    path = f"/api/applications/{world.application.slug}/migration/phases/1/move/"
    answer = api.post(path, {"to": "dual_running", "reason": "go"}, format="json")
    assert answer.status_code == 403, answer.content
    page = Client()
    page.force_login(deployer)
    form = page.post(
        f"/applications/{world.application.slug}/migration/phases/1/move/",
        {"to": "dual_running", "reason": "go"},
    )
    assert form.status_code == 403
    assert "needs maintainer" in form.content.decode()
    assert MigrationMove.objects.count() == before
    page.force_login(person("mia", "maintainer"))
    shown = page.get(f"/applications/{world.application.slug}/migration/").content.decode()
    assert "Move to" in shown
    page.force_login(deployer)
    assert (
        "Move to"
        not in page.get(f"/applications/{world.application.slug}/migration/").content.decode()
    )


# Every URL name of the app: the ones that change something are the table's (and the
# migration move's); the rest only read, or are not a person's action (login, the build
# notification hook, which its own secret guards). A new name fails until it is put in one.
CHANGES = {
    "queue-deploy": "queue",
    "deploy-cancel": "cancel",
    "deploy-abandon": "abandon",
    "deploy-retry-build": "retry-build",
    "deploy-restore": "restore",
    "application-lock": "lock",
    "application-unlock": "unlock",
    "application-migration-move": "move_phase",
    "api-deploys": "queue",
    "api-deploy-cancel": "cancel",
    "api-deploy-abandon": "abandon",
    "api-deploy-retry-build": "retry-build",
    "api-deploy-restore": "restore",
    "api-application-lock": "lock",
    "api-application-unlock": "unlock",
    "api-migration-move": "move_phase",
}
READS_OR_NOT_A_PERSONS_ACTION = {
    "dashboard", "dashboard-live", "application-branches", "deploy", "deploy-live",
    "applications", "application", "application-migration", "history", "cluster",
    "api-deploy", "api-build-log", "api-queue", "api-migration", "api-app-config",
    "api-cluster-reports", "api-reports", "audit", "api-audit", "api-schema", "api-docs",
    "api-not-found", "hook-jenkins", "login", "logout", "metrics", "healthz",
    "oidc_authentication_init", "oidc_authentication_callback",
}  # fmt: skip


# A person's own things, needing no role on any application: their API tokens.
ONES_OWN = {"tokens", "token-make", "token-revoke"}


def _names(patterns, namespace="") -> set[str]:
    names = set()
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "admin":
                continue  # Django's admin: staff only, by Django
            names |= _names(pattern.url_patterns, pattern.namespace or namespace)
        elif isinstance(pattern, URLPattern) and pattern.name:
            names.add(pattern.name)
    return names


def test_every_url_is_read_only_or_has_a_rule():
    names = _names(get_resolver().url_patterns)
    unknown = names - set(CHANGES) - READS_OR_NOT_A_PERSONS_ACTION - ONES_OWN
    assert unknown == set(), f"say which rule guards these, or that they only read: {unknown}"
    rules_named = {rule.replace("-", "_") for rule in CHANGES.values()}
    assert rules_named <= set(roles.RULES), rules_named - set(roles.RULES)
