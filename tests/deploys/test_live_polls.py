"""What a poll of the live fragments costs and answers (deploys/live.py): nothing changed is a
304 with no body from one query; a change is the changed row only; one person's answer is
never another's; a final deploy's answer tells the script to stop."""

import json
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from builds.models import Build, BuildStatus
from clusters.models import Cluster, ClusterReport, Placement, ProcessType, ReportKind, Service
from deploys import applications, live, statemachine
from deploys.models import Application, Deploy, RolloutStatus, ServiceRollout
from deploys.states import State
from lib.durations import in_words
from tests.people import person

BOARD = "/live/dashboard/"
LONG_AGO = timezone.now() - timedelta(hours=1)


@pytest.fixture(autouse=True)
def one_minute(monkeypatch):
    """The clock's part of the ETags held still: the tests say when a minute passes."""
    monkeypatch.setattr(live, "minute", lambda: 29_000_000)


def at_rest(*applications_):
    """Rows last changed an hour ago: only what a test changes is newer than a poll."""
    for app in applications_:
        Application.objects.filter(pk=app.pk).update(changed_at=LONG_AGO)
        Deploy.objects.filter(application=app).update(updated_at=LONG_AGO)


@pytest.fixture
def shop(application, user):
    holder = Deploy.objects.create(
        application=application,
        branch="feature/now",
        requester=user,
        state=State.BUILDING,
        started_at=LONG_AGO,
    )
    other = Application.objects.create(slug="other", name="Other", git_remote_url="/x.git")
    Deploy.objects.create(application=other, branch="feature/there", requester=user)
    at_rest(application, other)
    return holder


def poll(client, url=BOARD, answer=None, **query):
    """A poll as the script makes it: the ETag and the token of the last answer sent back."""
    headers = {}
    if answer is not None:
        headers["If-None-Match"] = answer["ETag"]
        query.setdefault("since", answer["X-Live-Cursor"])
    return client.get(url, query, headers=headers)


def rows_in(response) -> list[str]:
    html = response.content.decode()
    return [part.split('"', 1)[0] for part in html.split('data-live-id="')[1:]]


def test_an_unchanged_dashboard_poll_is_a_304_with_no_body_from_one_query(
    logged_in, shop, django_assert_max_num_queries
):
    first = poll(logged_in)
    assert first.status_code == 200
    assert rows_in(first) == ["app-demo-shop-row", "app-other-row"]

    with django_assert_max_num_queries(3):  # the session, the user, the cursors
        again = poll(logged_in, answer=first)

    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]


def test_an_unchanged_poll_costs_the_same_at_one_and_at_many_applications(
    logged_in, shop, user, django_assert_num_queries
):
    first = poll(logged_in)
    with django_assert_num_queries(3):
        assert poll(logged_in, answer=first).status_code == 304
    for n in range(20):
        app = Application.objects.create(slug=f"app-{n}", name=f"App {n}", git_remote_url="/x")
        Deploy.objects.create(application=app, branch="feature/x", requester=user)
    many = poll(logged_in)
    with django_assert_num_queries(3):
        assert poll(logged_in, answer=many).status_code == 304


def test_a_deploy_that_moves_comes_back_alone(logged_in, shop):
    first = poll(logged_in)

    statemachine.transition(shop.pk, State.BUILD_FAILED, message="red")
    moved = poll(logged_in, answer=first)

    assert moved.status_code == 200
    assert rows_in(moved) == ["app-demo-shop-row"]
    assert "Build failed" in moved.content.decode()
    assert moved["ETag"] != first["ETag"]
    assert poll(logged_in, answer=moved).status_code == 304


def test_a_lock_and_a_note_each_come_back_alone(logged_in, shop, user):
    first = poll(logged_in)
    other = Application.objects.get(slug="other")

    applications.lock_application(other, actor=user, reason="freeze <now>")
    locked = poll(logged_in, answer=first)
    assert rows_in(locked) == ["app-other-row"]
    assert "freeze &lt;now&gt;" in locked.content.decode()

    at_rest(other)  # the lock's own notes are on the timeline of other's deploy
    rested = poll(logged_in)
    statemachine.record_event(shop, "a note")
    noted = poll(logged_in, answer=rested)
    assert noted.status_code == 200 and rows_in(noted) == ["app-demo-shop-row"]


def test_a_note_never_moves_the_safety_nets_heartbeat_back(shop):
    due = timezone.now() + timedelta(seconds=60)  # a step's retry, waiting (deploys/steps.py)
    Deploy.objects.filter(pk=shop.pk).update(updated_at=due)

    statemachine.record_event(shop, "a note while the retry waits")

    assert Deploy.objects.get(pk=shop.pk).updated_at == due


def test_a_cluster_report_comes_back_with_its_application_row(logged_in, shop, application):
    cluster = Cluster.objects.create(name="demo")
    service = Service.objects.create(
        application=application, name="web", process_type=ProcessType.WEB, phase=1
    )
    Placement.objects.create(service=service, cluster=cluster, ecs_service_name="web")
    at_rest(application)
    first = poll(logged_in)

    ClusterReport.objects.create(cluster=cluster, kind=ReportKind.choices[0][0], message="m")
    reported = poll(logged_in, answer=first)

    assert rows_in(reported) == ["app-demo-shop-row"]
    assert "1 open report" in reported.content.decode()


def test_a_rollouts_progress_comes_back_with_its_application_row(logged_in, shop, application):
    cluster = Cluster.objects.create(name="demo")
    service = Service.objects.create(
        application=application, name="web", process_type=ProcessType.WEB, phase=1
    )
    placement = Placement.objects.create(service=service, cluster=cluster, ecs_service_name="web")
    rollout = ServiceRollout.objects.create(deploy=shop, placement=placement, phase=1)
    at_rest(application)
    first = poll(logged_in)

    rollout.write(status=RolloutStatus.DONE)  # by update(): no auto_now of its own
    progressed = poll(logged_in, answer=first)

    assert progressed.status_code == 200 and rows_in(progressed) == ["app-demo-shop-row"]


def test_a_new_minute_brings_every_row_again(logged_in, shop, monkeypatch):
    first = poll(logged_in)
    monkeypatch.setattr(live, "minute", lambda: 29_000_001)

    later = poll(logged_in, answer=first)

    assert later.status_code == 200
    assert rows_in(later) == ["app-demo-shop-row", "app-other-row"]


def test_a_since_that_does_not_parse_gets_every_row(logged_in, shop):
    for since in ("", "x", "1-2-3", "29000000-", "29000000-zz"):
        answer = logged_in.get(BOARD, {"since": since})
        assert answer.status_code == 200
        assert rows_in(answer) == ["app-demo-shop-row", "app-other-row"]


def test_one_persons_answer_is_not_anothers(logged_in, shop, application):
    viewer = Client()
    viewer.force_login(person("vera", "viewer"))
    mine = poll(logged_in)

    theirs = poll(viewer, answer=mine)  # the maintainer's ETag, sent by the viewer

    assert theirs.status_code == 200
    assert 'data-mine="1"' in mine.content.decode()
    assert 'data-mine="1"' not in theirs.content.decode()


def test_an_unchanged_deploy_poll_is_a_304_from_one_query(
    logged_in, shop, django_assert_max_num_queries
):
    url = f"/deploys/{shop.pk}/live/"
    first = logged_in.get(url)
    assert first.status_code == 200 and "X-Live-Final" not in first

    with django_assert_max_num_queries(3):  # the session, the user, the cursor and role
        again = logged_in.get(url, headers={"If-None-Match": first["ETag"]})

    assert again.status_code == 304 and again.content == b""


def test_a_deploy_poll_sees_its_builds_and_its_place_in_the_queue(logged_in, shop, user):
    queued = Deploy.objects.create(application=shop.application, branch="feature/y", requester=user)
    at_rest(shop.application)
    url = f"/deploys/{queued.pk}/live/"
    first = logged_in.get(url)
    assert "number 1 in the queue" in first.content.decode()

    Build.objects.create(deploy=shop, attempt=1, status=BuildStatus.RUNNING)  # not queued's
    assert logged_in.get(url, headers={"If-None-Match": first["ETag"]}).status_code == 304

    Build.objects.create(deploy=queued, attempt=1, status=BuildStatus.PENDING)
    built = logged_in.get(url, headers={"If-None-Match": first["ETag"]})
    assert built.status_code == 200

    statemachine.transition(shop.pk, State.CANCELLED, message="gone")
    ahead_gone = logged_in.get(url, headers={"If-None-Match": built["ETag"]})
    assert ahead_gone.status_code == 200


def test_the_deploy_poll_of_a_viewer_is_not_a_maintainers(logged_in, shop):
    url = f"/deploys/{shop.pk}/live/"
    maintainers = logged_in.get(url)
    viewer = Client()
    viewer.force_login(person("vera", "viewer"))

    viewers = viewer.get(url, headers={"If-None-Match": maintainers["ETag"]})

    assert viewers.status_code == 200
    assert "Cancel</button>" in maintainers.content.decode()
    assert "Cancel</button>" not in viewers.content.decode()


def test_a_new_grant_is_a_new_answer(shop):
    vera = person("vera", "viewer")
    viewer = Client()
    viewer.force_login(vera)
    url = f"/deploys/{shop.pk}/live/"
    before = viewer.get(url)

    person("mo", "maintainer")  # someone else's grant changes nothing of vera's
    assert viewer.get(url, headers={"If-None-Match": before["ETag"]}).status_code == 304

    vera.role_grants.update(role="maintainer")
    after = viewer.get(url, headers={"If-None-Match": before["ETag"]})
    assert after.status_code == 200 and "Cancel</button>" in after.content.decode()


def test_a_final_deploys_answer_tells_the_script_to_stop(logged_in, shop):
    statemachine.transition(shop.pk, State.CANCELLED, message="no")

    answer = logged_in.get(f"/deploys/{shop.pk}/live/")

    assert answer.status_code == 200
    assert answer["X-Live-Final"] == "1"
    assert 'data-state="cancelled"' in answer.content.decode()


def test_a_missing_deploy_is_still_a_404(logged_in, db):
    assert logged_in.get("/deploys/999999/live/").status_code == 404


def test_the_holders_time_ticks_in_the_page_from_the_servers_count(logged_in, shop):
    html = poll(logged_in).content.decode()

    counted, words = re.search(
        r'for <span class="elapsed" data-started-at="[0-9.]+" data-elapsed="(\d+)">([^<]+)<', html
    ).groups()

    assert int(counted) >= 3600  # it took the slot an hour ago
    assert words in (in_words(int(counted)), in_words(int(counted) + 1))  # a second apart


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's script")
def test_the_script_says_durations_in_the_words_of_lib_durations():
    script = (Path(__file__).resolve().parents[2] / "static/js/live.js").read_text()
    start, end = script.index("  var UNITS"), script.index("  // The server says")
    samples = [0, 0.4, 1, 59, 60, 61, 119, 600, 725, 3599, 3600, 3660, 7199, 86400, 90061, 1e7]
    program = script[start:end] + f"console.log(JSON.stringify({samples}.map(inWords)));"
    ran = subprocess.run(["node", "-e", program], capture_output=True, text=True, check=True)
    assert json.loads(ran.stdout) == [in_words(s) for s in samples]
