"""Bad input is a 400, always (issue 9, part 6): never a 500, and it changes nothing.

Each case the hostile pass found, and its neighbours: a lone surrogate or a NUL in any text
(API, pages, hooks, query strings), JSON nested too deep, ids out of a bigint's range in
URLs. Each test checks the status, the message naming the field, and that the database is
as it was. tests/test_api_fuzz.py throws generated input at every endpoint.
"""

import json

import pytest
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import ValidationError
from rest_framework.test import APIClient

from accounts import tokens
from builds.models import Build
from deploys import actions, applications
from deploys.api_errors import exception_handler
from deploys.history_views import HistoryFilterForm
from deploys.models import Application, Deploy, DeployEvent
from deploys.states import State
from fatcontroller.converters import MAX_ID, IdConverter
from fatcontroller.parsers import MAX_JSON_DEPTH, JSONRejected, loads
from fatcontroller.text import NOT_FINITE, NUL, SURROGATE, bad_text_in, text_problem

HOOK_SECRET = "hook-secret-for-tests"
OUT_OF_RANGE = [0, 2**63, 2**64, 10**30, "9" * 5000]


@pytest.fixture
def page(client, user):
    client.force_login(user)
    return client


@pytest.fixture
def deploy(application, user):
    return actions.queue_deploy(
        application="demo-shop", branch="feature/clean-merge", mode="deploy", requester=user
    )


def snapshot():
    """What bad input must leave as it was."""
    return (
        list(Deploy.objects.order_by("pk").values_list("pk", "state", "branch", "note")),
        DeployEvent.objects.count(),
        Build.objects.count(),
        list(Application.objects.order_by("pk").values_list("locked", "lock_reason")),
    )


def post_json(client, url, raw: str, **kwargs):
    """POST `raw` exactly as given: json.dumps writes a lone surrogate as the escape "\\ud800"."""
    return client.post(url, raw, content_type="application/json", **kwargs)


# ------------------------------------------------------------------------- the one rule


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("fine", None),
        ("ünïcødé ✓ 🚂", None),  # a pair of surrogates in JSON is this emoji: fine
        ("a\x00b", NUL),
        ("\ud800", SURROGATE),
        ("x\udfff", SURROGATE),
        ("\x00\ud800", NUL),
    ],
)
def test_text_problem_refuses_nul_and_lone_surrogates_only(value, problem):
    assert text_problem(value) == problem


def test_bad_text_in_names_each_field_by_its_path():
    data = {"ok": "x", "branch": "a\x00", "deep": {"list": ["fine", "\ud800"]}, "n": 1e999}
    assert bad_text_in(data) == {
        "branch": [NUL],
        "deep.list[1]": [SURROGATE],
        "n": [NOT_FINITE],
    }
    assert bad_text_in({"bad\x00key": 1}) == {"body (a key)": [NUL]}
    assert bad_text_in("\x00") == {"body": [NUL]}


def test_loads_counts_depth_without_recursion_and_not_inside_strings():
    assert loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(JSONRejected, match=str(MAX_JSON_DEPTH)):
        loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    with pytest.raises(JSONRejected, match=str(MAX_JSON_DEPTH)):
        loads("[" * 100_000)  # not even closed: refused before the parser recurses
    assert loads(json.dumps(["[" * 1000 + '\\"{'])) == ["[" * 1000 + '\\"{']
    # An unterminated string of escaped quotes: refused quickly, not quadratically.
    with pytest.raises(JSONRejected):
        loads('"' + '\\"' * 200_000)


def test_loads_refuses_what_python_would_take_but_json_or_a_database_would_not():
    for raw in ("NaN", "[Infinity]", '{"a": 1e999}', "1" * 5000, '"\\u0000"', '"\\ud800"'):
        with pytest.raises(JSONRejected):
            loads(raw)
    with pytest.raises(JSONRejected, match="UTF-8|utf-8"):
        loads(b'"\xed\xa0\x80"')  # a surrogate written as raw bytes is not UTF-8


def test_a_list_shaped_validation_error_keeps_the_shape():
    response = exception_handler(ValidationError("one message"), {})
    assert response.data == {"errors": {"detail": ["one message"]}}


# -------------------------------------------------------------------------------- the API


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("branch", "\ud800", SURROGATE),
        ("branch", "feature/\x00x", NUL),
        ("note", "\ud800", SURROGATE),
        ("note", "a note\x00", NUL),
        ("application", "demo\x00shop", NUL),
        ("mode", "\udc00", SURROGATE),
    ],
)
def test_bad_text_in_a_new_deploy_is_a_400_naming_the_field(
    api, application, field, value, message
):
    body = {"application": "demo-shop", "branch": "feature/clean-merge", field: value}
    before = snapshot()
    response = post_json(api, "/api/deploys/", json.dumps(body))
    assert response.status_code == 400
    assert response.json() == {"errors": {field: [message]}}
    assert snapshot() == before


def test_bad_text_anywhere_in_the_body_is_refused_even_where_unused(api, application):
    body = {"application": "demo-shop", "branch": "feature/clean-merge", "x": [{"y": "\x00"}]}
    response = post_json(api, "/api/deploys/", json.dumps(body))
    assert response.status_code == 400
    assert response.json() == {"errors": {"x[0].y": [NUL]}}
    assert not Deploy.objects.exists()


def test_a_form_encoded_body_is_held_to_the_same_rule(api, application):
    response = api.post("/api/applications/demo-shop/lock/", {"reason": "deploy freeze\x00"})
    assert response.status_code == 400
    assert response.json() == {"errors": {"reason": [NUL]}}
    application.refresh_from_db()
    assert not application.locked


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5000, 100_000])
def test_deep_json_is_a_400_that_says_the_limit(api, application, depth):
    before = snapshot()
    response = post_json(api, "/api/deploys/", "[" * depth + "]" * depth)
    assert response.status_code == 400
    (message,) = response.json()["errors"]["detail"]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in message
    assert snapshot() == before


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ('{"application": "demo-shop", "branch": 1e999}', "branch", NOT_FINITE),
        ('{"application": "demo-shop", "branch": NaN}', "detail", "JSON parse error"),
        ('{"application": "demo-shop", "note": ' + "9" * 5000 + "}", "detail", "parse error"),
        ('{"application": "demo-shop"', "detail", "JSON parse error"),
    ],
)
def test_json_python_would_misread_is_a_400(api, application, raw, field, words):
    response = post_json(api, "/api/deploys/", raw)
    assert response.status_code == 400
    assert words in " ".join(response.json()["errors"][field])
    assert not Deploy.objects.exists()


@pytest.mark.parametrize("reason", ["freeze\x00", "\ud800 freeze"])
def test_a_lock_reason_with_bad_text_is_a_400_and_does_not_lock(api, application, reason):
    before = snapshot()
    response = post_json(api, "/api/applications/demo-shop/lock/", json.dumps({"reason": reason}))
    assert response.status_code == 400
    assert response.json() == {"errors": {"reason": [text_problem(reason)]}}
    assert snapshot() == before


def test_a_button_refuses_a_bad_body_and_does_nothing(api, deploy):
    before = snapshot()
    response = post_json(api, f"/api/deploys/{deploy.pk}/cancel/", '{"why": "\\u0000"}')
    assert response.status_code == 400
    assert response.json() == {"errors": {"why": [NUL]}}
    assert snapshot() == before
    deploy.refresh_from_db()
    assert deploy.state == State.QUEUED


def test_a_bad_body_from_a_stranger_is_still_a_401_first(application):
    response = post_json(APIClient(), "/api/deploys/", '{"branch": "\\ud800"}')
    assert response.status_code in (401, 403)


def test_a_token_with_a_nul_is_a_wrong_token(application, user):
    tokens.make(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token abc\x00def")
    response = client.get("/api/applications/demo-shop/queue/")
    assert response.status_code == 401
    assert response.json() == {"errors": {"detail": ["Invalid token."]}}


def test_the_actions_refuse_bad_text_themselves(application, user):
    """Whatever face calls them: checked before any query or git command sees the text."""
    with pytest.raises(actions.DeployRequestError) as caught:
        actions.queue_deploy(
            application="demo-shop", branch="\ud800", mode="deploy", requester=user
        )
    assert caught.value.errors == {"branch": [SURROGATE]}
    with pytest.raises(actions.DeployRequestError) as caught:
        applications.lock_application(application, actor=user, reason="x\x00")
    assert caught.value.errors == {"reason": [NUL]}
    assert snapshot() == ([], 0, 0, [(False, "")])


# ---------------------------------------------------------------------- ids out of range


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
@pytest.mark.parametrize(
    "url",
    [
        "/api/deploys/{}/",
        "/api/deploys/{}/builds/1/log",
        "/api/deploys/1/builds/{}/log",
        "/deploys/{}/",
        "/deploys/{}/live/",
    ],
)
def test_an_id_out_of_range_is_a_404(api, page, deploy, url, bad):
    client = api if url.startswith("/api/") else page
    assert client.get(url.format(bad)).status_code == 404


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
@pytest.mark.parametrize("button", ["cancel", "abandon", "retry-build", "restore", "rollback"])
def test_a_button_on_an_id_out_of_range_is_a_404_and_changes_nothing(
    api, page, deploy, button, bad
):
    before = snapshot()
    assert api.post(f"/api/deploys/{bad}/{button}/").status_code == 404
    assert page.post(f"/deploys/{bad}/{button}/").status_code == 404
    assert snapshot() == before


def test_the_largest_id_matches_and_finds_nothing(api, page, deploy):
    assert api.get(f"/api/deploys/{MAX_ID}/").status_code == 404
    assert api.get(f"/api/deploys/{MAX_ID}/builds/{MAX_ID}/log").status_code == 404
    assert api.get(f"/api/deploys/{deploy.pk}/builds/{2**31}/log").status_code == 404
    assert page.get(f"/deploys/{MAX_ID}/").status_code == 404
    assert page.get(f"/deploys/00{deploy.pk}/").status_code == 200  # as <int:> allowed


def test_the_converter_matches_only_ids():
    converter = IdConverter()
    assert converter.to_python("1") == 1
    assert converter.to_python(str(MAX_ID)) == MAX_ID
    for bad in ("0", "000", str(MAX_ID + 1), "9" * 5000):
        with pytest.raises(ValueError):
            converter.to_python(bad)
    with pytest.raises(ValueError):
        converter.to_url(0)


# ------------------------------------------------------------------------------ the pages


def test_the_queue_form_refuses_a_nul_next_to_the_field(page, application):
    response = page.post(
        "/deploys/queue/",
        {"application": "demo-shop", "branch": "feature/clean\x00-merge", "mode": "deploy"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Must not contain NUL characters" in html
    assert "\x00" not in html
    assert 'value="feature/clean-merge"' in html  # what was typed, less the NUL
    assert not Deploy.objects.exists()


def test_the_lock_form_refuses_a_nul_and_does_not_lock(page, application):
    before = snapshot()
    response = page.post("/applications/demo-shop/lock/", {"reason": "freeze\x00 for now"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Must not contain NUL characters" in html
    assert "\x00" not in html
    assert snapshot() == before


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("application=%00", NUL),
        ("person=bob%00", NUL),
        ("state=queued%00", NUL),
        ("date_from=2026-01-01%00", NUL),
        # The cursor is a hidden field: the page says so, as for any cursor it cannot read.
        ("before=12%00", "That page link was not understood"),
    ],
)
def test_a_history_filter_with_a_nul_is_a_400_with_its_message(page, application, query, words):
    response = page.get(f"/history/?{query}")
    assert response.status_code == 400
    html = response.content.decode()
    assert words.split(" (")[0] in html
    assert "\x00" not in html


def test_a_history_filter_form_refuses_a_surrogate_too(application):
    # A query string cannot carry one (it is decoded with replacement), but the rule holds.
    form = HistoryFilterForm({"state": "\ud800"}, applications=[application], people=[])
    assert not form.is_valid()
    assert form.bad_text == {"state": SURROGATE}
    assert form.errors["state"] == [SURROGATE]


def test_good_history_filters_are_still_a_200(page, application):
    assert page.get("/history/?state=queued&application=demo-shop").status_code == 200


def test_the_shared_validator_is_a_django_validator():
    from fatcontroller.text import validate_text

    validate_text("fine")
    with pytest.raises(DjangoValidationError):
        validate_text("\x00")


# ------------------------------------------------------------------------------ the hooks


@pytest.fixture
def hook(client, application, monkeypatch):
    monkeypatch.setenv(application.hook_secret_variable, HOOK_SECRET)

    def post(raw: str):
        return post_json(
            client, "/hooks/jenkins/", raw, headers={"X-Fatcontroller-Secret": HOOK_SECRET}
        )

    return post


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (
            '{"application": "demo-shop\\u0000", "deploy_id": 1, "attempt": 1}',
            "application: Must not contain NUL",
        ),
        (
            '{"application": "\\ud800", "deploy_id": 1, "attempt": 1}',
            "application: Must not contain lone",
        ),
        ("[" * 5000 + "]" * 5000, f"deeper than {MAX_JSON_DEPTH} levels"),
        (
            '{"application": "demo-shop", "deploy_id": 1e999, "attempt": 1}',
            "deploy_id: Must be a finite",
        ),
        (f'{{"application": "demo-shop", "deploy_id": {2**63}, "attempt": 1}}', "must be numbers"),
        (
            f'{{"application": "demo-shop", "deploy_id": "{2**64}", "attempt": 1}}',
            "must be numbers",
        ),
        ('{"application": "demo-shop", "deploy_id": "\\u00b2", "attempt": 1}', "must be numbers"),
        (f'{{"application": "demo-shop", "deploy_id": 1, "attempt": {10**30}}}', "must be numbers"),
    ],
)
def test_a_bad_hook_body_is_a_400_that_says_why(hook, deploy, raw, words):
    before = snapshot()
    response = hook(raw)
    assert response.status_code == 400
    assert words in response.json()["error"]
    assert snapshot() == before


def test_the_largest_id_in_a_hook_is_a_404(hook, deploy):
    response = hook(
        json.dumps({"application": "demo-shop", "deploy_id": MAX_ID, "attempt": MAX_ID})
    )
    assert response.status_code == 404
