"""Generated input at every endpoint: whatever is sent, the answer is never a 5xx.

The endpoints are read from the URLconf, so a new one is covered without touching this file:
all but the admin, login and logout (Django's own) and the operational probes, which read no
input and whose 503 is their answer when a worker is missing. Each gets GET and POST, logged
in, with generated ids in its path (0, negative, huge, 2**63, 2**64, real ones), generated
query strings, and generated bodies: JSON of dicts, lists and strings with NUL and lone
surrogates, huge ints, non-finite floats, nesting past the limit; raw bytes; form data.
Besides "no 5xx": the API and the hooks read every body they are sent, so there a body
carrying NUL or a lone surrogate is never accepted (no 2xx). A page that has no use for a
POST body may ignore it.
"""

import json
import re
from urllib.parse import urlencode

import pytest
from django.urls import URLResolver, get_resolver
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from builds.models import Build
from deploys import actions

HOOK_SECRET = "hook-secret-for-tests"
EXAMPLES_PER_ENDPOINT = 15
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
NOT_FUZZED = ("admin/", "login/", "logout/", "healthz", "metrics")


def routes() -> list[str]:
    """Every route of the URLconf as written ("api/deploys/<id:pk>/"), but NOT_FUZZED."""

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern)

    return [
        route for route in walk(get_resolver().url_patterns, "") if not route.startswith(NOT_FUZZED)
    ]


def test_the_fuzzed_routes_include_every_api_endpoint_and_the_hook():
    from deploys.api_urls import urlpatterns as api_patterns

    found = routes()
    assert {"api/" + str(p.pattern) for p in api_patterns} <= set(found)
    assert {"hooks/jenkins/", "deploys/<id:pk>/live/", "history/"} <= set(found)


# ------------------------------------------------------------------------------- strategies

odd_chars = st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\u2028", "²"])
texts = st.text(st.one_of(st.characters(), odd_chars), max_size=12)
known = st.sampled_from(
    ["demo-shop", "feature/clean-merge", "main", "deploy", "merge_only", "1", "0", ""]
)
keys = st.one_of(
    st.sampled_from(
        ["application", "branch", "mode", "note", "reason", "deploy_id", "attempt", "offset"]
    ),
    texts,
)
numbers = st.one_of(
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63 - 1, 2**63, 2**64, 10**30]),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN, Infinity
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts, known)
json_values = st.recursive(
    leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
# Bodies shaped like the real ones, so generated values reach past the first check.
shaped = st.fixed_dictionaries(
    {},
    optional={
        "application": st.one_of(known, texts, json_values),
        "branch": st.one_of(known, texts, numbers),
        "mode": st.one_of(known, texts),
        "note": st.one_of(texts, numbers),
        "reason": st.one_of(texts, known, json_values),
        "deploy_id": st.one_of(numbers, texts, known),
        "attempt": st.one_of(numbers, texts, known),
    },
)


def dumps(value) -> bytes:
    # ensure_ascii writes a lone surrogate as the escape "\ud800", as a hostile client would.
    return json.dumps(value).encode()


raw_bodies = st.one_of(
    st.integers(60, 6000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(1, 6000).map(lambda n: ('{"a":' * n).encode()),
    st.just(b"9" * 5000),
    st.binary(max_size=40),
)
bodies = st.one_of(
    st.tuples(st.just("json"), st.one_of(shaped, json_values).map(lambda v: (v, dumps(v)))),
    st.tuples(st.just("json"), raw_bodies.map(lambda b: (None, b))),
    st.tuples(st.just("form"), st.dictionaries(keys, st.one_of(texts, known), max_size=4)),
)
# Mostly edges: a random integer is rarely past 2**63, and that is where SQLite overflows.
edge_ids = [0, 1, 2**31 - 1, 2**31, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64, 10**30]
ids = st.one_of(
    st.sampled_from([str(n) for n in edge_ids] + ["00", "-1", "9" * 300, "x", "%00", "1.5"]),
    st.integers(0, 10**40).map(str),
)
slugs = st.one_of(known, st.from_regex(r"[-a-zA-Z0-9_]{1,10}", fullmatch=True), st.just("%00"))
queries = st.dictionaries(
    st.sampled_from(["offset", "application", "person", "state", "date_from", "before", "x"]),
    st.one_of(texts, known, numbers.map(str)),
    max_size=3,
)


def has_bad_text(value) -> bool:
    """Whether a NUL or a lone surrogate is anywhere in `value`, keys included."""
    if isinstance(value, str):
        return "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(has_bad_text(k) or has_bad_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_bad_text(v) for v in value)
    return False


# ------------------------------------------------------------------------------------ test


@pytest.fixture
def world(application, user, monkeypatch):
    """A deploy with a build, logged in, the hook's secret set: real ids to find."""
    monkeypatch.setenv(application.hook_secret_variable, HOOK_SECRET)
    deploy = actions.queue_deploy(
        application="demo-shop", branch="feature/clean-merge", mode="deploy", requester=user
    )
    Build.objects.create(deploy=deploy, attempt=1, log="a log\n")
    client = APIClient()
    client.force_authenticate(user)  # the API, without session CSRF getting in the way
    client.force_login(user)  # the pages
    return client, deploy


@pytest.mark.parametrize("route", routes())
@settings(
    max_examples=EXAMPLES_PER_ENDPOINT,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_input_gets_a_server_error(world, route, data):
    client, deploy = world
    real = st.just(str(deploy.pk))

    def value_for(match):
        converter = match.group(1) or "str"
        if converter in ("id", "int"):
            return data.draw(st.one_of(ids, real), label=match.group(2))
        if converter == "slug":
            return data.draw(slugs, label=match.group(2))
        return data.draw(st.one_of(known, texts.map(lambda t: t.encode("utf-8", "replace").hex())))

    path = "/" + _CONVERTER.sub(value_for, route)
    query = urlencode(data.draw(queries, label="query"), encoding="utf-8", errors="surrogatepass")
    url = f"{path}?{query}" if query else path
    method = data.draw(st.sampled_from(["get", "post"]), label="method")
    headers = {"X-Fatcontroller-Secret": HOOK_SECRET}

    if method == "get":
        response = client.get(url, headers=headers)
        sent_bad = False
    else:
        kind, body = data.draw(bodies, label="body")
        if kind == "json":
            value, raw = body
            response = client.generic(
                "POST", url, raw, content_type="application/json", headers=headers
            )
            sent_bad = has_bad_text(value)
        else:
            form = {
                k.encode("utf-8", "surrogatepass").decode("utf-8", "replace"): v.encode(
                    "utf-8", "surrogatepass"
                ).decode("utf-8", "replace")
                for k, v in body.items()
            }
            response = client.post(url, form, headers=headers)
            sent_bad = "\x00" in "".join(form) + "".join(form.values())

    assert response.status_code < 500, (method, url, response.content[:500])
    if sent_bad and route.startswith(("api/", "hooks/")):
        assert not 200 <= response.status_code < 300, (method, url, response.content[:500])
