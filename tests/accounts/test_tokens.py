"""API tokens (accounts/): hashed at rest, named, expiring, revocable by their owner on the
tokens page and by staff in the admin; a token carries its user's roles and nothing more."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import tokens
from accounts.models import ApiToken
from deploys.models import Application
from tests.people import person

pytestmark = pytest.mark.django_db


def api_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def shop(db):
    return Application.objects.create(slug="shop", name="Shop", git_remote_url="/nowhere.git")


def test_a_token_is_kept_only_as_a_hash_and_works_until_it_expires(shop):
    ann = person("ann", "viewer")
    token, key = tokens.make(ann, "ci job", days=30)
    assert key.startswith("fc_") and len(key) > 40
    stored = ApiToken.objects.get()
    assert stored.key_hash == tokens.digest(key) != key
    assert key not in str(ApiToken.objects.values().get())  # nowhere in the row
    assert stored.prefix == key[:11]
    assert timedelta(days=30) - (stored.expires_at - stored.created_at) < timedelta(seconds=5)

    assert api_with(key).get("/api/applications/shop/queue/").status_code == 200
    assert ApiToken.objects.get().last_used_at is not None

    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    answer = api_with(key).get("/api/applications/shop/queue/")
    assert answer.status_code == 401
    assert answer.json() == {"errors": {"detail": ["Token expired."]}}
    wrong = api_with("fc_" + "x" * 43).get("/api/applications/shop/queue/")
    assert wrong.status_code == 401 and wrong.json()["errors"]["detail"] == ["Invalid token."]


def test_a_revoked_token_is_refused_and_carries_only_its_users_roles(shop):
    viewer = person("vic", "viewer")
    _, key = tokens.make(viewer, "script")
    queued = api_with(key).post(
        "/api/deploys/", {"application": "shop", "branch": "feature/x"}, format="json"
    )
    assert queued.status_code == 403  # a viewer's token queues nothing
    token = ApiToken.objects.get()
    assert tokens.revoke(token, by=viewer) is True
    assert tokens.revoke(token, by=viewer) is False  # once
    answer = api_with(key).get("/api/applications/shop/queue/")
    assert answer.status_code == 401
    assert answer.json() == {"errors": {"detail": ["Token revoked."]}}


def test_the_tokens_page_makes_shows_once_and_revokes_only_ones_own(shop):
    ann, bob = person("ann"), person("bob")
    _, bobs_key = tokens.make(bob, "bob's")
    page = Client()
    page.force_login(ann)
    made = page.post("/tokens/new/", {"name": "laptop", "days": "7"})
    assert made.status_code == 201
    body = made.content.decode()
    token = ApiToken.objects.get(user=ann)
    key = body.split('<code id="new-key">', 1)[1].split("</code>", 1)[0]
    assert tokens.digest(key) == token.key_hash
    listed = page.get("/tokens/").content.decode()
    assert key not in listed and f"{token.prefix}..." in listed and "bob&#x27;s" not in listed

    bobs = ApiToken.objects.get(user=bob)
    assert page.post(f"/tokens/{bobs.pk}/revoke/").status_code == 404  # not hers
    assert ApiToken.objects.get(pk=bobs.pk).revoked_at is None
    assert page.post(f"/tokens/{token.pk}/revoke/").status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_by == ann

    for bad, said in (
        ({"name": "", "days": "7"}, "give the token a name"),
        ({"name": "x", "days": "400"}, "from 1 to 365 days"),
        ({"name": "x", "days": "soon"}, "a whole number"),
        ({"name": "x\x00", "days": "7"}, "not made"),
    ):
        answer = page.post("/tokens/new/", bad)
        assert answer.status_code == 400, bad
        assert said in answer.content.decode(), bad
    assert ApiToken.objects.filter(user=ann).count() == 1  # nothing more made


def test_staff_revoke_anyones_token_in_the_admin(shop):
    ann = person("ann")
    tokens.make(ann, "old")
    admin = Client()
    admin.force_login(person("sam", is_staff=True, is_superuser=True))
    token = ApiToken.objects.get()
    answer = admin.post(
        "/admin/accounts/apitoken/",
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    assert answer.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None and token.revoked_by.username == "sam"


def test_make_token_prints_the_key_once():
    person("ann")
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "make_token", "ann", "--name", "deploy bot", "--days", "10", stdout=out, stderr=err
    )
    key = out.getvalue().strip()
    assert tokens.find(key)[0].name == "deploy bot"
    assert key not in err.getvalue()
    with pytest.raises(CommandError, match="from 1 to 365 days"):
        call_command("make_token", "ann", "--name", "x", "--days", "0", stdout=out)
