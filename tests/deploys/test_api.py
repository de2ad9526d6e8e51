import pytest
from rest_framework.test import APIClient

from accounts import tokens
from deploys.models import Deploy
from deploys.states import State


def create(api, **body):
    return api.post("/api/deploys/", body, format="json")


def test_create_returns_201_and_the_deploy(api, application):
    response = create(api, application="demo-shop", branch="feature/clean-merge", mode="merge_only")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["branch"] == "feature/clean-merge"
    assert body["mode"] == "merge_only"
    assert body["state"] == State.QUEUED
    assert body["position_in_queue"] == 1
    assert body["events"][0]["to"] == State.QUEUED
    assert body["events"][0]["actor"] == "alice"
    assert body["builds"] == []
    assert Deploy.objects.filter(pk=body["id"]).exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"application": "nope", "branch": "feature/clean-merge"}, "application", "no application"),
        ({"application": "demo-shop", "branch": "../x"}, "branch", ""),
        ({"application": "demo-shop", "branch": "--upload-pack=touch x"}, "branch", ""),
        ({"application": "demo-shop", "branch": "a b"}, "branch", ""),
        ({"application": "demo-shop", "branch": "a\nb"}, "branch", ""),
        ({"application": "demo-shop", "branch": "no/such-branch"}, "branch", "no branch"),
        ({"application": "demo-shop", "branch": "main"}, "branch", "default branch"),
        ({"application": "demo-shop", "branch": "feature/clean-merge", "mode": "yolo"}, "mode", ""),
        ({"application": "demo-shop"}, "branch", "required"),
        ({"branch": "feature/clean-merge"}, "application", "required"),
        ({"application": "demo-shop", "branch": 42}, "branch", "required"),
    ],
)
def test_bad_input_is_400_with_errors_and_creates_nothing(api, application, body, field, message):
    response = api.post("/api/deploys/", body, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in errors
    assert message in " ".join(errors[field])
    assert not Deploy.objects.exists()


def test_a_branch_already_in_flight_is_refused(api, application):
    assert create(api, application="demo-shop", branch="feature/clean-merge").status_code == 201
    response = create(api, application="demo-shop", branch="feature/clean-merge")
    assert response.status_code == 400
    assert "already queued" in response.json()["errors"]["branch"][0]
    assert Deploy.objects.count() == 1


def test_login_is_required(application, user):
    client = APIClient()
    response = client.get("/api/applications/demo-shop/queue/")
    assert response.status_code in (401, 403)
    assert "errors" in response.json()
    assert client.post("/api/deploys/", {}, format="json").status_code in (401, 403)


def test_token_auth_works(application, user):
    _, key = tokens.make(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/applications/demo-shop/queue/").status_code == 200


def test_session_auth_needs_csrf(application, user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post(
        "/api/deploys/", {"application": "demo-shop", "branch": "feature/clean-merge"}
    )
    assert response.status_code == 403
    assert not Deploy.objects.exists()


def test_queue_shows_the_holder_and_the_waiting_in_order(api, application, user):
    from deploys import slot

    ids = [
        create(api, application="demo-shop", branch=b).json()["id"]
        for b in ("feature/clean-merge", "feature/flaky-test", "feature/broken-build")
    ]
    slot.advance(application.pk)
    body = api.get("/api/applications/demo-shop/queue/").json()
    assert body["holder"]["id"] == ids[0]
    assert [(d["id"], d["position_in_queue"]) for d in body["waiting"]] == [
        (ids[1], 1),
        (ids[2], 2),
    ]
    detail = api.get(f"/api/deploys/{ids[2]}/").json()
    assert detail["position_in_queue"] == 2
    assert api.get(f"/api/deploys/{ids[0]}/").json()["position_in_queue"] is None


def test_unknown_application_queue_is_404(api, application):
    response = api.get("/api/applications/nope/queue/")
    assert response.status_code == 404
    assert "errors" in response.json()


def test_buttons_answer_409_in_the_wrong_state_and_change_nothing(api, application):
    deploy_id = create(api, application="demo-shop", branch="feature/clean-merge").json()["id"]
    for action in ("abandon", "retry-build"):
        response = api.post(f"/api/deploys/{deploy_id}/{action}/")
        assert response.status_code == 409, action
        assert "queued" in response.json()["errors"]["state"][0]
    assert Deploy.objects.get(pk=deploy_id).state == State.QUEUED
    assert Deploy.objects.get(pk=deploy_id).events.count() == 1


def test_cancel_a_queued_deploy(api, application):
    deploy_id = create(api, application="demo-shop", branch="feature/clean-merge").json()["id"]
    response = api.post(f"/api/deploys/{deploy_id}/cancel/")
    assert response.status_code == 200
    assert response.json()["state"] == State.CANCELLED
    again = api.post(f"/api/deploys/{deploy_id}/cancel/")
    assert again.status_code == 200  # a second press changes nothing
    assert Deploy.objects.get(pk=deploy_id).events.count() == 2
    assert api.post(f"/api/deploys/{deploy_id}/retry-build/").status_code == 409


def test_the_answer_lists_what_may_be_asked_now_as_the_page_offers_it(api, application, logged_in):
    deploy_id = create(api, application="demo-shop", branch="feature/clean-merge").json()["id"]
    assert api.get(f"/api/deploys/{deploy_id}/").json()["actions"] == ["cancel"]
    page = logged_in.get(f"/deploys/{deploy_id}/").content.decode()
    assert f'action="/deploys/{deploy_id}/cancel/"' in page  # the same rule drew the button

    cancelled = api.post(f"/api/deploys/{deploy_id}/cancel/").json()

    assert cancelled["actions"] == []
    assert api.get(f"/api/deploys/{deploy_id}/").json()["actions"] == []


def test_missing_deploy_is_404(api, db):
    assert api.get("/api/deploys/999999/").status_code == 404
    assert api.post("/api/deploys/999999/cancel/").status_code == 404
