"""End to end: the embedded default that `make run` starts, driven over real HTTP.

This test uses no test database and no Redis. It runs the same commands as `make run`
(migrate, collectstatic, demo, runembedded) as subprocesses, with FC_EMBEDDED=1 and without
DATABASE_URL, REDIS_URL or SECRET_KEY, so the server keeps SQLite, a folder broker and a
secret key under its own temporary FC_VAR_DIR, and web, a Celery worker and Celery beat are
real separate processes. Without AWS_ENDPOINT_URL (the test takes the AWS_* settings away) it
also runs the simulated AWS, `runmoto`, on a free FC_MOTO_PORT, and the demo deploys to its
ECS. The test then logs in and clicks through the pages with `requests`, as a person would
in a browser, and drives the API with the same session.

Acceptance: in the embedded default, a demo branch whose build flakes can be retried from
the deploy page and then merges; a deploy of the demo goes out phase by phase, to the
simulated ECS and to the stand-in Jenkins' legacy deploy jobs as the demo's migration plan
says, and merges; a branch whose image runs out of memory on ECS is rolled back, unmerged; a
branch whose legacy job fails is rolled back on both sides, unmerged.
"""

import json
import re
import shutil
import sqlite3
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests

from builds.models import BuildStatus
from deploys.states import FINAL_STATES, State
from devtools.demo import (
    BEHAVIOUR_ANNOTATION,
    DEMO_SLUG,
    LEAK_BRANCH,
    LEGACY_FAILS,
    LEGACY_FAILS_BRANCH,
    OOM_BRANCH,
)
from tests.embedded_server import EmbeddedServer

FLAKY_BRANCH = "feature/flaky-test"
FLAKY_FAILURE = "FAIL test_checkout: timed out waiting for the payment stub (flaky)"
CLEAN_BRANCH = "feature/clean-merge"
DEMO_REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/demo-shop"
# What a demo deploy updates, with each rollout phase, as `manage.py demo` leaves its
# migration (the mailer cut over, the worker dual running, the rest planned): the ECS services
# of the mailer and the worker, and the legacy deploy jobs of all but the mailer.
DEMO_PHASES = {
    "demo-shop-mailer": 1,
    "demo-shop-worker": 1,
}
DEMO_LEGACY_PHASES = {
    "worker": 1,
    "poller": 1,
    "static": 2,
    "web": 3,
}

DEPLOY_TIMEOUT = 120.0  # each wait for a state; the demo build takes about 3 s

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None, reason="the demo and the pipeline need git on PATH"
)


@pytest.fixture
def embedded(embedded_default):
    """`make run` in a temporary FC_VAR_DIR on a free port (tests/conftest.py)."""
    return embedded_default


class _Forms(HTMLParser):
    """The forms of a page: action, fields (name -> value) and the text of their buttons."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []
        self._form = None
        self._in_button = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._form = {"action": attrs.get("action") or "", "fields": {}, "buttons": []}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and attrs.get("name"):
            if attrs.get("type") in ("radio", "checkbox") and "checked" not in attrs:
                return
            self._form["fields"][attrs["name"]] = attrs.get("value") or ""
        elif tag == "button":
            self._in_button = True
            self._form["buttons"].append("")

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._in_button = False

    def handle_data(self, data):
        if self._in_button and self._form is not None:
            self._form["buttons"][-1] += data.strip()


def form_with_button(html: str, button: str, **fields: str) -> dict:
    """The one form with the button (and these field values: the dashboard has a Queue form
    per application, demo-boxes' too where a Docker engine answers)."""
    parser = _Forms()
    parser.feed(html)
    found = [
        form
        for form in parser.forms
        if button in form["buttons"]
        and all(form["fields"].get(name) == value for name, value in fields.items())
    ]
    assert len(found) == 1, f"expected one form with a {button!r} button, found {parser.forms}"
    return found[0]


def login(server: EmbeddedServer) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{server.url}/login/", timeout=10)
    assert page.status_code == 200, server.explain(f"GET /login/: {page.status_code}")
    assert "csrftoken" in session.cookies, server.explain(f"no CSRF cookie: {page.headers}")
    form = form_with_button(page.text, "Log in")
    response = session.post(
        f"{server.url}/login/",
        data={
            **form["fields"],
            "username": server.username,
            "password": server.password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        },
        headers={"Referer": f"{server.url}/login/"},
        timeout=10,
    )
    assert response.status_code == 200, server.explain(f"log in: {response.status_code}")
    assert response.url == f"{server.url}/", server.explain(f"log in ended on {response.url}")
    assert "sessionid" in session.cookies, server.explain("log in set no session cookie")
    return session


def post_form(session, server, page_url: str, form: dict, **fields) -> requests.Response:
    """Submit `form` from the page at `page_url` as a browser would, and follow the redirect."""
    response = session.post(
        server.url + form["action"],
        data={**form["fields"], **fields},
        headers={"Referer": page_url},
        timeout=10,
    )
    assert response.history and response.history[0].status_code == 302, server.explain(
        f"POST {form['action']}: {response.status_code} {response.text[:2000]}"
    )
    assert response.status_code == 200, server.explain(
        f"POST {form['action']} led to {response.url}: {response.status_code}"
    )
    return response


def wait_for_state(session, server, deploy_id: int, wanted: str, give_up_at=()) -> dict:
    """Poll the API until the deploy is in `wanted`; fail at once in any other final state
    (or in a state of `give_up_at`, such as build_failed: that deploy is abandoned, so the slot
    it would hold for minutes goes to the next test's deploy).
    """
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    seen = []
    while True:
        response = session.get(f"{server.url}/api/deploys/{deploy_id}/", timeout=10)
        assert response.status_code == 200, server.explain(
            f"GET /api/deploys/{deploy_id}/: {response.status_code} {response.text[:2000]}"
        )
        deploy = response.json()
        if not seen or seen[-1] != deploy["state"]:
            seen.append(deploy["state"])
        if deploy["state"] == wanted:
            return deploy
        if deploy["state"] in give_up_at:
            session.post(
                f"{server.url}/api/deploys/{deploy_id}/abandon/",
                headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{server.url}/"},
                timeout=10,
            )
        stuck = deploy["state"] in FINAL_STATES or deploy["state"] in give_up_at
        assert not stuck and time.monotonic() < deadline, server.explain(
            f"deploy #{deploy_id} never reached {wanted}: states seen {seen}; last answer {deploy}"
        )
        time.sleep(0.2)


def build_log(session, server, deploy_id: int, attempt: int) -> dict:
    response = session.get(
        f"{server.url}/api/deploys/{deploy_id}/builds/{attempt}/log",
        params={"offset": 0},
        timeout=10,
    )
    assert response.status_code == 200, server.explain(
        f"build {attempt} log: {response.status_code} {response.text[:2000]}"
    )
    return response.json()


def git(remote: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", *args], cwd=remote, capture_output=True, text=True, timeout=30, check=False
    )


def demo_remote(server: EmbeddedServer) -> Path:
    """The demo application's remote, as the embedded server's own database records it."""
    database = server.var_dir / "fatcontroller.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        (url,) = connection.execute(
            "SELECT git_remote_url FROM deploys_application WHERE slug = ?", [DEMO_SLUG]
        ).fetchone()
    connection.close()
    assert Path(url) == server.var_dir / "demo" / "demo-shop.git", url
    return Path(url)


def test_a_flaky_demo_build_is_retried_from_the_deploy_page_and_merges(embedded):
    server = embedded
    session = login(server)

    # The dashboard: queue the flaky branch, merge only, from the demo application's form.
    dashboard = session.get(f"{server.url}/", timeout=10)
    assert dashboard.status_code == 200, server.explain(f"GET /: {dashboard.status_code}")
    assert f'id="app-{DEMO_SLUG}"' in dashboard.text, server.explain(dashboard.text[:3000])
    queue_form = form_with_button(dashboard.text, "Queue", application=DEMO_SLUG)
    assert queue_form["action"] == "/deploys/queue/", queue_form
    assert queue_form["fields"]["application"] == DEMO_SLUG, queue_form
    deploy_page = post_form(
        session,
        server,
        f"{server.url}/",
        queue_form,
        branch=FLAKY_BRANCH,
        mode="merge_only",
        note="end-to-end test of the embedded default",
    )
    match = re.fullmatch(re.escape(server.url) + r"/deploys/(\d+)/", deploy_page.url)
    assert match, server.explain(f"queueing ended on {deploy_page.url}: {deploy_page.text[:3000]}")
    deploy_id = int(match[1])
    assert f"Queued {FLAKY_BRANCH} as deploy #{deploy_id}." in deploy_page.text

    # Its first build meets the flaky test: the slot is held for a retry.
    failed = wait_for_state(session, server, deploy_id, State.BUILD_FAILED)
    assert [b["status"] for b in failed["builds"]] == [BuildStatus.FAILED], failed
    assert failed["held_until"], failed
    first_log = build_log(session, server, deploy_id, 1)
    assert FLAKY_FAILURE in first_log["text"], first_log
    assert first_log["finished"] is True and first_log["status"] == BuildStatus.FAILED, first_log

    # The deploy page offers the retry and says how long the slot is held.
    page_url = f"{server.url}/deploys/{deploy_id}/"
    page = session.get(page_url, timeout=10)
    assert page.status_code == 200, server.explain(f"GET {page_url}: {page.status_code}")
    assert "Retry build" in page.text, server.explain(page.text)
    assert "The slot is held until" in page.text, server.explain(page.text)
    assert FLAKY_FAILURE in page.text, server.explain(page.text)
    retry_form = form_with_button(page.text, "Retry build")
    assert retry_form["action"] == f"/deploys/{deploy_id}/retry-build/", retry_form
    assert retry_form["fields"].get("csrfmiddlewaretoken"), retry_form
    after_retry = post_form(session, server, page_url, retry_form)
    assert after_retry.url == page_url, after_retry.url
    assert "The build runs again." in after_retry.text, server.explain(after_retry.text)

    # The second build passes and the candidate lands on main.
    merged = wait_for_state(session, server, deploy_id, State.MERGED)
    assert [(b["attempt"], b["status"]) for b in merged["builds"]] == [
        (1, BuildStatus.FAILED),
        (2, BuildStatus.SUCCEEDED),
    ], merged
    assert merged["held_until"] is None, merged
    retries = [e for e in merged["events"] if e["from"] == State.BUILD_FAILED]
    assert [(e["actor"], e["to"]) for e in retries] == [(server.username, State.BUILDING)], merged
    second_log = build_log(session, server, deploy_id, 2)
    assert "integration: 5 tests passed" in second_log["text"], second_log
    assert "== all checks passed" in second_log["text"], second_log

    remote = demo_remote(server)
    branch_head = git(remote, "rev-parse", f"refs/heads/{FLAKY_BRANCH}").stdout.strip()
    main_head = git(remote, "rev-parse", "refs/heads/main").stdout.strip()
    assert branch_head == merged["head_sha"], (branch_head, merged)
    assert main_head == merged["candidate_sha"], (main_head, merged)
    contains = git(remote, "merge-base", "--is-ancestor", branch_head, "refs/heads/main")
    assert contains.returncode == 0, f"main {main_head} does not contain {branch_head}: {contains}"

    final_page = session.get(page_url, timeout=10)
    assert final_page.status_code == 200
    assert "Retry build" not in final_page.text, server.explain(final_page.text)


def queue_deploy(session, server, branch: str, mode: str = "deploy") -> int:
    """Queue `branch` through the API with the logged-in session; returns the deploy's id."""
    response = session.post(
        f"{server.url}/api/deploys/",
        json={"application": DEMO_SLUG, "branch": branch, "mode": mode, "note": "end to end"},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{server.url}/"},
        timeout=10,
    )
    assert response.status_code == 201, server.explain(
        f"POST /api/deploys/ {branch}: {response.status_code} {response.text[:2000]}"
    )
    return response.json()["id"]


def ecs_rollouts(deploy: dict) -> dict[str, dict]:
    """The deploy's rollouts to ECS, by ECS service."""
    return {r["ecs_service"]: r for r in deploy["rollouts"] if r["ecs_service"]}


def legacy_rollouts(deploy: dict) -> dict[str, dict]:
    """The deploy's rollouts to legacy deploy jobs (no ECS service), by service."""
    return {r["service"]: r for r in deploy["rollouts"] if not r["ecs_service"]}


def main_head(server: EmbeddedServer) -> str:
    return git(demo_remote(server), "rev-parse", "refs/heads/main").stdout.strip()


def test_a_demo_deploy_goes_out_to_the_simulated_ecs_phase_by_phase_and_merges(embedded):
    server = embedded
    session = login(server)

    deploy_id = queue_deploy(session, server, CLEAN_BRANCH)
    deploy = wait_for_state(
        session, server, deploy_id, State.SUCCEEDED, give_up_at={State.BUILD_FAILED}
    )

    image = f"{DEMO_REPOSITORY}:{deploy['candidate_sha'][:12]}"
    log = build_log(session, server, deploy_id, 1)
    assert f"publish: pushed {image}" in log["text"], log
    rollouts = ecs_rollouts(deploy)
    assert {name: r["phase"] for name, r in rollouts.items()} == DEMO_PHASES, deploy["rollouts"]
    legacy = legacy_rollouts(deploy)
    assert {name: (r["phase"], r["status"], r["image"]) for name, r in legacy.items()} == {
        name: (phase, "done", image) for name, phase in DEMO_LEGACY_PHASES.items()
    }, deploy["rollouts"]
    for r in legacy.values():  # the version is the image's tag; before it, the file's
        assert (r["previous_task_definition"], r["new_task_definition"]) == (
            "1.0.0",
            image.rsplit(":", 1)[1],
        ), r
    for name, r in rollouts.items():
        assert r["status"] == "done", r
        assert r["cluster"] == "demo", r
        assert r["image"] == image, r
        assert (r["running_count"], r["desired_count"]) == (2, 2), r
        before, after = (
            r[k].rsplit("/", 1)[-1] for k in ("previous_task_definition", "new_task_definition")
        )
        assert before.partition(":")[0] == after.partition(":")[0] == name, r
        assert before != after, r

    # Phase by phase, both sides: a phase starts only once everything of the one before is out.
    messages = [e["message"] for e in deploy["events"]]
    sides = {f"{name} on demo": phase for name, phase in DEMO_PHASES.items()}
    sides.update(
        (f"{name} (legacy job legacy-deploy-{name})", phase)
        for name, phase in DEMO_LEGACY_PHASES.items()
    )
    started, out = {}, {}
    for index, message in enumerate(messages):
        for side in sides:
            if message.startswith(f"{side}: "):
                started.setdefault(side, index)
            elif message.startswith(f"{side} runs "):
                out.setdefault(side, index)
    assert set(started) == set(out) == set(sides), messages
    for side, phase in sides.items():
        assert started[side] < out[side], messages
        before = [other for other, p in sides.items() if p == phase - 1]
        assert all(out[other] < started[side] for other in before), messages
    moves = [e["to"] for e in deploy["events"] if e["from"] != e["to"]]
    assert moves[-4:] == [
        State.DEPLOYING,
        State.VERIFYING,
        State.MERGING_TO_DEFAULT,
        State.SUCCEEDED,
    ], moves

    assert main_head(server) == deploy["candidate_sha"], deploy


def test_a_demo_branch_whose_image_runs_out_of_memory_is_rolled_back_unmerged(embedded):
    server = embedded
    session = login(server)
    main_before = main_head(server)

    deploy_id = queue_deploy(session, server, OOM_BRANCH)
    deploy = wait_for_state(
        session, server, deploy_id, State.ROLLED_BACK, give_up_at={State.BUILD_FAILED}
    )

    # The build passed and published an image that says it will not boot.
    assert [b["status"] for b in deploy["builds"]] == [BuildStatus.SUCCEEDED], deploy
    log = build_log(session, server, deploy_id, 1)
    assert f"{BEHAVIOUR_ANNOTATION}=oom" in log["text"], log
    # Its first phase failed on ECS and went back; the later phases were never touched.
    (why,) = [e for e in deploy["events"] if e["to"] == State.ROLLING_BACK and e["from"] != e["to"]]
    assert "stopped: OutOfMemoryError" in why["message"], why
    statuses = {
        r["ecs_service"] or r["service"]: (r["phase"], r["status"]) for r in deploy["rollouts"]
    }
    assert statuses == {
        "demo-shop-mailer": (1, "rolled_back"),
        "demo-shop-worker": (1, "rolled_back"),
        "worker": (1, "rolled_back"),
        "poller": (1, "rolled_back"),
        "static": (2, "pending"),
        "web": (3, "pending"),
    }, deploy["rollouts"]
    for r in [r for r in deploy["rollouts"] if r["phase"] == 1]:
        assert r["message"] == f"back on {r['previous_task_definition'].rsplit('/', 1)[-1]}", r

    # Nothing was merged: main is where it was and does not hold the branch.
    assert main_head(server) == main_before, deploy
    remote = demo_remote(server)
    assert deploy["head_sha"], deploy
    held = git(remote, "merge-base", "--is-ancestor", deploy["head_sha"], "refs/heads/main")
    assert held.returncode == 1, f"main holds {OOM_BRANCH}: {held}"


def test_a_demo_branch_whose_legacy_job_fails_is_rolled_back_on_both_sides(embedded):
    server = embedded
    session = login(server)
    main_before = main_head(server)

    deploy_id = queue_deploy(session, server, LEGACY_FAILS_BRANCH)
    deploy = wait_for_state(
        session, server, deploy_id, State.ROLLED_BACK, give_up_at={State.BUILD_FAILED}
    )

    log = build_log(session, server, deploy_id, 1)
    assert f"{BEHAVIOUR_ANNOTATION}={LEGACY_FAILS}" in log["text"], log
    # The legacy jobs of the first phase failed on the image; the timeline says so and why.
    (why,) = [e for e in deploy["events"] if e["to"] == State.ROLLING_BACK and e["from"] != e["to"]]
    assert "legacy job legacy-deploy-worker build #" in why["message"], why
    assert "health check failed: demo-shop-worker stopped with status 1" in why["message"], why
    # Its ECS side went out and was put back too, as were the legacy jobs; the rest untouched.
    ecs = ecs_rollouts(deploy)
    assert {name: (r["phase"], r["status"]) for name, r in ecs.items()} == {
        name: (phase, "rolled_back") for name, phase in DEMO_PHASES.items()
    }, deploy["rollouts"]
    for r in ecs.values():
        assert r["message"] == f"back on {r['previous_task_definition'].rsplit('/', 1)[-1]}", r
    legacy = legacy_rollouts(deploy)
    assert {name: r["status"] for name, r in legacy.items()} == {
        "worker": "rolled_back",
        "poller": "rolled_back",
        "static": "pending",
        "web": "pending",
    }, deploy["rollouts"]
    for name in ("worker", "poller"):
        r = legacy[name]
        assert r["message"] == f"back on {r['previous_task_definition']}", r
    assert main_head(server) == main_before, deploy


def test_the_demo_cluster_shows_a_disconnected_agent_drained_and_one_without_reserved_memory(
    embedded,
):
    server = embedded
    session = login(server)
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    while True:  # the real agent watch, every 10 s, after its 20 s grace (runembedded)
        answer = session.get(f"{server.url}/api/clusters/demo/reports/?state=open", timeout=30)
        assert answer.status_code == 200, answer.text
        found = {r["kind"]: r for r in answer.json()["reports"]}
        if {"agent_disconnected", "reserved_memory"} <= found.keys():
            break
        assert time.monotonic() < deadline, server.explain(f"open reports: {found}")
        time.sleep(0.5)
    disconnected, unreserved = found["agent_disconnected"], found["reserved_memory"]
    assert disconnected["drained"] is True, disconnected  # drain_disconnected: true
    assert unreserved["detail"] == {"total": 8192, "registered": 8192}, unreserved
    assert "ECS_RESERVED_MEMORY=256" in unreserved["message"]
    assert disconnected["subject"] != unreserved["subject"]
    counts = {kind: [r["kind"] for r in answer.json()["reports"]].count(kind) for kind in found}
    assert counts["agent_disconnected"] == counts["reserved_memory"] == 1, counts

    page = session.get(f"{server.url}/clusters/demo/", timeout=30)
    assert page.status_code == 200
    for report in (disconnected, unreserved):
        assert report["subject"] in page.text
        assert report["kind_display"] in page.text
    assert "DRAINING" in page.text


def crash_loop_reports(server: EmbeddedServer) -> dict[str, dict]:
    """The demo cluster's crash loop reports, by service, as the server's database has them."""
    database = server.var_dir / "fatcontroller.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        rows = connection.execute(
            "SELECT subject, detail, closed_at FROM clusters_clusterreport WHERE kind = ?",
            ["crash_loop"],
        ).fetchall()
    connection.close()
    return {
        subject: {**json.loads(detail), "closed_at": closed} for subject, detail, closed in rows
    }


def test_a_demo_branch_that_leaks_memory_is_a_crash_loop_stopped_at_the_second_host(embedded):
    server = embedded
    session = login(server)

    deploy_id = queue_deploy(session, server, LEAK_BRANCH)
    deploy = wait_for_state(
        session, server, deploy_id, State.SUCCEEDED, give_up_at={State.BUILD_FAILED}
    )
    # It went out healthy and was merged; then its tasks outgrow their memory, host after
    # host, and the crash loop check puts back the revision before it on each ECS service.
    made = {name: r["new_task_definition"] for name, r in ecs_rollouts(deploy).items()}
    before = {name: r["previous_task_definition"] for name, r in ecs_rollouts(deploy).items()}
    deadline = time.monotonic() + DEPLOY_TIMEOUT
    while True:
        reports = crash_loop_reports(server)
        if all(reports.get(name, {}).get("action") == "restored" for name in made):
            break
        assert time.monotonic() < deadline, reports
        time.sleep(0.5)  # the watch runs every FC_CRASH_LOOP_WATCH_SECONDS
    for name, report in reports.items():
        assert report["revision"] == made[name], report
        assert len(report["hosts"]) >= 2, report
        assert report["good"] == before[name], report
        assert report["closed_at"] is None, report
    page = session.get(f"{server.url}/clusters/demo/", timeout=30)
    assert page.status_code == 200
    assert "crash loop: OOM-killed on host after host" in page.text
    assert "restored demo-shop-" in page.text
