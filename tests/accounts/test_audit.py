"""The audit log (accounts/audit.py): each action by a person leaves exactly one entry, with
who, when, from which address, on what and the change; nothing edits or deletes one; the
audit page and API show maintainers their applications' entries, staff all."""

import io

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import AuditEntry
from clusters import migration
from deploys import actions, applications
from deploys.models import Deploy
from deploys.states import State
from tests.migration_world import make_world
from tests.people import PASSWORD, person

pytestmark = pytest.mark.django_db
ADDRESS = "192.0.2.10"


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action))


def test_each_action_on_a_deploy_leaves_exactly_one_entry(application, user, tmp_path):
    deploy = actions.queue_deploy(
        application="demo-shop", branch="feature/clean-merge", mode="deploy", requester=user
    )
    (queued,) = entries("queue")
    assert (queued.actor, queued.application, queued.subject) == (
        user, application, f"deploy #{deploy.pk}"
    )  # fmt: skip
    assert queued.change == {"branch": "feature/clean-merge", "mode": "deploy", "note": ""}

    actions.cancel(deploy, actor=user)
    actions.cancel(Deploy.objects.get(pk=deploy.pk), actor=user)  # a double click: no change
    assert len(entries("cancel")) == 1

    failed = Deploy.objects.create(
        application=application, branch="feature/b", requester=user, state=State.BUILD_FAILED,
        candidate_sha="a" * 40,
    )  # fmt: skip
    actions.abandon(failed, actor=user)
    assert [e.subject for e in entries("abandon")] == [f"deploy #{failed.pk}"]

    applications.lock_application(application, actor=user, reason="release freeze")
    applications.unlock_application(application, actor=user)
    applications.unlock_application(application, actor=user)  # not locked: nothing
    assert [e.change for e in entries("lock")] == [{"reason": "release freeze"}]
    assert len(entries("unlock")) == 1


def test_a_refused_action_leaves_no_entry(application):
    viewer = person("vic", "viewer")
    with pytest.raises(Exception, match="You may not"):
        applications.lock_application(application, actor=viewer, reason="mine")
    assert not AuditEntry.objects.filter(action="lock").exists()


def test_plan_moves_tokens_grants_and_config_loads_are_recorded(user):
    world = make_world()
    migration.move(world.phase(1), "dual_running", actor=user, reason="cron first")
    (moved,) = entries("plan_move")
    assert moved.application == world.application
    assert moved.change == {"from": "planned", "to": "dual_running", "reason": "cron first",
                            "forced": False}  # fmt: skip

    token, _ = tokens.make(user, "ci")
    tokens.revoke(token, by=user)
    assert [e.subject for e in entries("token_made")] == [f"token ci ({token.prefix}...)"]
    assert len(entries("token_revoked")) == 1

    call_command("grant", "alice", "deployer", "--app", "shop", stdout=io.StringIO())
    (granted,) = entries("role_grant")
    assert (granted.actor_name, granted.subject, granted.change) == (
        "fatcontroller", "alice", {"role": "deployer"}
    )  # fmt: skip


def test_config_load_records_what_it_changed(application):
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "devtools" / "demo-shop.fatcontroller.yml"
    call_command("load_app_config", str(example), "--dry-run", stdout=io.StringIO())
    assert entries("config_load") == []  # a dry run changes nothing
    call_command("load_app_config", str(example), stdout=io.StringIO())
    (loaded,) = entries("config_load")
    assert loaded.application.slug == "demo-shop"
    assert loaded.change["report"][0].startswith("demo-shop: ")


def test_logins_and_failed_logins_are_recorded_with_the_address():
    person("ann")
    browser = Client(REMOTE_ADDR=ADDRESS)
    browser.post("/login/", {"username": "ann", "password": "wrong"})
    browser.post("/login/", {"username": "ann", "password": PASSWORD})
    (failed,) = entries("login_failed")
    assert (failed.actor, failed.actor_name, failed.address) == (None, "ann", ADDRESS)
    assert "wrong" not in str(failed.change)
    (logged_in,) = entries("login")
    assert logged_in.actor.username == "ann" and logged_in.address == ADDRESS


def test_nothing_edits_or_deletes_an_entry(user):
    tokens.make(user, "ci")
    entry = AuditEntry.objects.get()
    kept = entry.subject
    entry.subject = "something else"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()

    admin = Client()
    admin.force_login(person("root", is_staff=True, is_superuser=True))
    change = admin.post(f"/admin/accounts/auditentry/{entry.pk}/change/", {"subject": "x"})
    assert change.status_code == 403
    delete = admin.post(f"/admin/accounts/auditentry/{entry.pk}/delete/", {"post": "yes"})
    assert delete.status_code == 403
    api = APIClient()
    api.force_authenticate(person("boss", is_staff=True))
    assert api.post("/api/audit/", {}, format="json").status_code == 405
    assert api.delete("/api/audit/").status_code == 405
    assert AuditEntry.objects.get(pk=entry.pk).subject == kept


def test_the_audit_page_and_api_show_maintainers_their_applications(application):
    from deploys.models import Application

    other = Application.objects.create(slug="blog", name="Blog", git_remote_url="/nowhere.git")
    keeper = person("kim", "maintainer", application=application)
    applications.lock_application(application, actor=keeper, reason="freeze")
    boss = person("boss", "maintainer")
    applications.lock_application(other, actor=boss, reason="blog freeze")

    api = APIClient()
    api.force_authenticate(keeper)
    mine = api.get("/api/audit/").json()["entries"]
    assert [(e["action"], e["application"]) for e in mine] == [("lock", "demo-shop")]
    assert mine[0]["actor"] == "kim" and mine[0]["change"] == {"reason": "freeze"}
    api.force_authenticate(boss)
    assert {e["application"] for e in api.get("/api/audit/?action=lock").json()["entries"]} == {
        "demo-shop", "blog"
    }  # fmt: skip
    assert api.get("/api/audit/?action=drop").status_code == 400
    api.force_authenticate(person("vic", "viewer"))
    assert api.get("/api/audit/").status_code == 403

    page = Client()
    page.force_login(keeper)
    shown = page.get("/audit/?application=demo-shop")
    assert shown.status_code == 200 and "freeze" in shown.content.decode()
    assert "blog freeze" not in shown.content.decode()
    page.force_login(person("dora", "deployer"))
    assert page.get("/audit/").status_code == 403
