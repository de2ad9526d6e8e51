"""The API's OpenAPI schema (/api/schema/) and its docs page (/api/docs/): the schema builds
with no warning (so a view without annotations fails here), both need a login, the page's
scripts are the sidecar's (no CDN), and every operation of the running API answers as the
schema says (schemathesis: generated requests, each answer's status, content type and body).

SCHEMATHESIS_EXAMPLES sets the examples per operation (`make soak` runs more).
"""

import io
import json
import os
import re
import time

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from accounts import tokens
from builds.models import Build
from deploys import actions
from fatcontroller.wsgi import application as wsgi_application
from tests.migration_world import make_world
from tests.people import person

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_schema_builds_with_no_warning():
    # --fail-on-warn: a view whose request or answers cannot be read is a warning.
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out, stderr=io.StringIO())
    assert "openapi: 3" in out.getvalue()


def test_the_schema_and_the_docs_need_a_login(user):
    refused = APIClient().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert refused.status_code == 401
    assert json.loads(refused.content)["errors"]["detail"]  # the API's shape (not JSON's type)
    page = Client().get("/api/docs/")
    assert page.status_code == 302
    assert page["Location"].startswith("/login/")

    api = APIClient()
    _, key = tokens.make(user, "schema")
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Fat Controller API"


def test_the_docs_page_loads_its_scripts_from_here(client, user):
    client.force_login(user)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/schema/" in html
    scripts = re.findall(r'src="([^"]+)"', html) + re.findall(r'href="([^"]+\.css)"', html)
    assert scripts, html
    for src in scripts:
        assert src.startswith("/static/drf_spectacular_sidecar/") or src.startswith("/api/"), src


def test_a_path_under_api_that_names_no_endpoint_is_the_apis_404(user):
    assert APIClient().get("/api/deploys/-1/").status_code == 401  # a stranger learns nothing
    api = APIClient()
    api.force_authenticate(user)
    for path in ("/api/nope/", "/api/deploys/-1/", "/api/applications/a%20b/queue/"):
        for answer in (api.get(path), api.post(path, {"a": 1}, format="json")):
            assert answer.status_code == 404, path
            assert answer.json()["errors"]["detail"], path
    # Only the final slash missing: redirected, as Django's APPEND_SLASH did.
    answer = api.get("/api/deploys/1?x=1")
    assert (answer.status_code, answer["Location"]) == (301, "/api/deploys/1/?x=1")
    assert api.get("/api/deploys/1/builds/1/log/").status_code == 404


# ------------------------------------------------------------------------------ schemathesis


@pytest.fixture
def in_the_tests_transaction():
    """The real WSGI handler closes the database connection after each request, and with it
    the test's transaction: Django's test client stops it the same way."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def world(application, in_the_tests_transaction):
    """A staff user with a token, a deploy with a build log, and an application with a
    migration plan and a cluster: real names and ids for the generated requests to find."""
    staff = person("sam", is_staff=True)
    _, key = tokens.make(staff, "schemathesis")
    deploy = actions.queue_deploy(
        application=application.slug, branch="feature/clean-merge", mode="deploy", requester=staff
    )
    Build.objects.create(deploy=deploy, attempt=1, log="a log\n")
    migrating = make_world()
    known = {
        "id": [deploy.pk],
        "attempt": [1],
        "slug": [application.slug, migrating.application.slug],
        "name": ["prod-eu"],
        "position": [1, 2],
    }
    return {"Authorization": f"Token {key}"}, known


def test_every_operation_answers_as_its_schema_says(world):
    auth, known = world
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_application, headers=auth)
    failures: dict[str, str] = {}  # the first of each kind, by what it says went wrong
    calls, started = 0, time.monotonic()

    def fuzz(operation):
        @given(data=st.data())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            # Every failure is collected below, none raised: nothing to shrink.
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(data):
            nonlocal calls
            # Valid requests, and invalid ones (wrong types, missing fields): a 4xx the
            # schema documents is the answer to those.
            mode = data.draw(st.sampled_from([GenerationMode.POSITIVE, GenerationMode.NEGATIVE]))
            case = data.draw(operation.as_strategy(generation_mode=mode))
            # Mostly real names and ids: a random id only finds a 404.
            for name in case.path_parameters or {}:
                if name in known and data.draw(st.integers(0, 3), label=name):
                    case.path_parameters[name] = data.draw(st.sampled_from(known[name]))
            response = case.call(headers=auth)
            calls += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=auth)
            # Every check's failure (a FailureGroup is a BaseExceptionGroup), kept to be shown
            # all at once.
            except BaseExceptionGroup as exc:
                said = str(exc)
                kind = f"{operation.label}: {said.split('Value:')[0].split('[')[0]}"
                failures.setdefault(kind, f"{operation.label}: {said}"[:2000])

        run()

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        fuzz(operation)

    elapsed = time.monotonic() - started
    print(f"schemathesis: {calls} calls to {len(operations)} operations in {elapsed:.1f} s")
    assert not failures, "\n\n".join(failures.values())
