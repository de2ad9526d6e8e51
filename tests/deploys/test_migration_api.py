"""The migration plan's API: GET /api/applications/<slug>/migration/ and POST
/api/applications/<slug>/migration/phases/<position>/move/. A refused move is a 409 with the
rule's message, bad input a 400, and neither changes anything."""

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from clusters import migration
from clusters.models import MigrationMove, MigrationPhase, MigrationState
from deploys.models import Application
from tests.migration_world import make_world, prove

S = MigrationState
pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def staff_api(db):
    client = APIClient()
    client.force_authenticate(
        get_user_model().objects.create_user("sam", password="x", is_staff=True)
    )
    return client


def plan_url(slug="shop") -> str:
    return f"/api/applications/{slug}/migration/"


def move_url(position: int, slug="shop") -> str:
    return f"{plan_url(slug)}phases/{position}/move/"


def unchanged(world) -> tuple:
    return (
        list(MigrationPhase.objects.filter(plan=world.plan).values_list("state", "state_since")),
        MigrationMove.objects.count(),
    )


def test_the_plan(api, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="cron first")
    prove(world, user, 1, deploys=1, hours=2)
    response = api.get(plan_url())
    assert response.status_code == 200
    body = response.json()
    assert body["application"] == "shop"
    assert body["proof"] == {"deploys": 3, "hours": 24}
    assert [(p["position"], p["name"], p["state"]) for p in body["phases"]] == [
        (1, "low-risk", "dual_running"),
        (2, "workers", "planned"),
        (3, "pollers", "planned"),
        (4, "static and webs", "planned"),
    ]
    first, second, fourth = body["phases"][0], body["phases"][1], body["phases"][3]
    assert first["services"] == [{"name": "cron", "runs_on": "both"}]
    assert fourth["services"] == [
        {"name": "static", "runs_on": "legacy"},
        {"name": "web", "runs_on": "legacy"},
    ]
    assert first["next_state"] == "cut_over"
    assert first["blockers"] == [
        "the ECS side is not proven yet: cron: 1 of 3 deploys and 2.0 of 24 h"
    ]
    assert first["proof"] == [
        {
            "service": "cron",
            "deploys": 1,
            "deploys_needed": 3,
            "hours": 2.0,
            "hours_needed": 24,
            "proven": False,
        }
    ]
    (move,) = first["moves"]
    assert {k: move[k] for k in ("by", "from", "to", "reason", "forced")} == {
        "by": "alice",
        "from": "planned",
        "to": "dual_running",
        "reason": "cron first",
        "forced": False,
    }
    assert move["at"] and first["state_since"]
    assert second["blockers"][0].startswith("phase 1 (low-risk) is dual running")
    assert second["may_force"] is False and second["moves"] == []


def test_staff_are_told_they_may_force(staff_api, world):
    phases = staff_api.get(plan_url()).json()["phases"]
    assert [p["may_force"] for p in phases] == [False, True, True, True]


def test_a_move(api, world):
    response = api.post(
        move_url(1), {"to": "dual_running", "reason": "cron first", "force": False}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["position"], body["state"], body["next_state"]) == (1, "dual_running", "cut_over")
    assert [m["reason"] for m in body["moves"]] == ["cron first"]
    assert MigrationPhase.objects.get(plan=world.plan, position=1).state == S.DUAL_RUNNING


def test_a_forced_move_by_staff(staff_api, world):
    response = staff_api.post(
        move_url(2), {"to": "dual_running", "reason": "urgent", "force": True}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["moves"][0]["forced"] is True


@pytest.mark.parametrize(
    "position, data, said",
    [
        (2, {"to": "dual_running", "reason": "early"}, "phase 1 (low-risk) is planned"),
        (1, {"to": "cut_over", "reason": "skip"}, "it can move to dual running only"),
        (2, {"to": "dual_running", "reason": "x", "force": True}, "only staff may force"),
    ],
)
def test_a_refused_move_is_a_409_and_changes_nothing(api, world, position, data, said):
    before = unchanged(world)
    response = api.post(move_url(position), data, format="json")
    assert response.status_code == 409
    (message,) = response.json()["errors"]["state"]
    assert said in message
    assert unchanged(world) == before


def test_an_unproven_cut_over_is_a_409(api, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    before = unchanged(world)
    response = api.post(move_url(1), {"to": "cut_over", "reason": "soon"}, format="json")
    assert response.status_code == 409
    assert response.json()["errors"]["state"] == [
        "the ECS side is not proven yet: cron: 0 of 3 deploys and 0.0 of 24 h"
    ]
    assert unchanged(world) == before


@pytest.mark.parametrize(
    "data, field",
    [
        ({"reason": "go"}, "to"),
        ({"to": "dual_running"}, "reason"),
        ({"to": "dual_running", "reason": "  "}, "reason"),
        ({"to": "dual_running", "reason": "x" * 1001}, "reason"),
        ({"to": "flying", "reason": "go"}, "to"),
        ({"to": 1, "reason": "go"}, "to"),
        ({"to": "dual_running", "reason": ["go"]}, "reason"),
        ({"to": "dual_running", "reason": "go", "force": "yes"}, "force"),
        ({"to": "dual_running", "reason": "go", "colour": "red"}, "colour"),
        ({"to": "dual_running", "reason": "go\u0000"}, "reason"),
        (["dual_running"], "body"),
    ],
)
def test_bad_input_is_a_400_and_changes_nothing(api, world, data, field):
    before = unchanged(world)
    response = api.post(move_url(1), data, format="json")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    assert unchanged(world) == before


def test_not_json_is_a_400(api, world):
    response = api.post(move_url(1), "{not json", content_type="application/json")
    assert response.status_code == 400
    assert not MigrationMove.objects.exists()


def test_unknown_application_or_phase_is_a_404(api, world):
    assert api.get(plan_url("nowhere")).status_code == 404
    data = {"to": "dual_running", "reason": "go"}
    assert api.post(move_url(1, "nowhere"), data, format="json").status_code == 404
    assert api.post(move_url(7), data, format="json").status_code == 404
    assert api.post(move_url(0), data, format="json").status_code == 404


def test_an_application_with_no_plan_is_a_404_that_says_so(api, db):
    Application.objects.create(slug="plain", name="Plain", git_remote_url="/x")
    for response in (
        api.get(plan_url("plain")),
        api.post(move_url(1, "plain"), {"to": "dual_running", "reason": "go"}, format="json"),
    ):
        assert response.status_code == 404
        (message,) = response.json()["errors"]["detail"]
        assert message.startswith("plain has no migration plan: add a `migration:` section")
        assert "docs/app-config.md" in message


def test_a_login_is_needed(world):
    anonymous = APIClient()
    assert anonymous.get(plan_url()).status_code in (401, 403)
    response = anonymous.post(move_url(1), {"to": "dual_running", "reason": "go"}, format="json")
    assert response.status_code in (401, 403)
    assert not MigrationMove.objects.exists()


def test_a_token_works(world, user):
    from accounts import tokens

    _, key = tokens.make(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(move_url(1), {"to": "dual_running", "reason": "go"}, format="json")
    assert response.status_code == 200
    assert MigrationMove.objects.get().actor == user
