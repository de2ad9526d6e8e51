"""The server-rendered pages: who may see them, CSRF, the queue form, the buttons, escaping,
and what a page costs in queries."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from builds.models import Build, BuildStatus
from deploys import actions, slot
from deploys.models import Application, Deploy, DeployEvent
from deploys.states import FINAL_STATES, Mode, State
from tests.pages import flashes, html_of, linked_deploys
from tests.queueing import queue, queue_and_drive

QUEUE_URL = "/deploys/queue/"
BUTTONS = ("cancel", "abandon", "retry-build")


# --- helpers -------------------------------------------------------------------------------


def form(application, branch, mode=Mode.MERGE_ONLY, note=""):
    return {"application": application.slug, "branch": branch, "mode": mode, "note": note}


def block(html: str, pattern: str) -> str:
    """The inner HTML of the first element matching `pattern` (an opening tag regex)."""
    match = re.search(pattern + r"(.*?)</", html, re.S)
    assert match, f"no {pattern!r} in the page"
    return match.group(1)


def element(html: str, tag: str, cls: str) -> str:
    match = re.search(rf'<{tag} class="{cls}"[^>]*>(.*?)</{tag}>', html, re.S)
    assert match, f"no <{tag} class={cls!r}> in the page"
    return match.group(1)


def app_section(html: str, slug: str) -> str:
    match = re.search(
        rf'<section class="application" id="app-{slug}"[^>]*>(.*?)</section>', html, re.S
    )
    assert match, f"no section for {slug} on the dashboard"
    return match.group(1)


def button_actions(html: str) -> set[str]:
    """Which deploy buttons (cancel, abandon, retry-build) the page offers."""
    return set(re.findall(r'<form method="post" action="/deploys/\d+/([a-z-]+)/"', html))


def make_build_failed(application, user, drive, capture, branch="feature/broken-build"):
    """Queue `branch` through the real pipeline and drive it until it rests."""
    return queue_and_drive(application, user, branch, drive, capture)


def snapshot(deploy: Deploy):
    deploy.refresh_from_db()
    return (
        deploy.state,
        deploy.finished_at,
        deploy.events.count(),
        list(deploy.builds.values_list("attempt", "status")),
    )


@pytest.fixture
def build_failed_row(application, user):
    """A deploy written straight into build_failed: every button is legal on it."""
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/broken-build",
        requester=user,
        state=State.BUILD_FAILED,
        mode=Mode.MERGE_ONLY,
    )
    DeployEvent.objects.create(deploy=deploy, from_state="", to_state=State.QUEUED)
    return deploy


# --- anonymous users -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "login"),
    [
        ("get", "/", "/login/"),
        ("get", "/deploys/{pk}/", "/login/"),
        ("post", QUEUE_URL, "/login/"),
        ("post", "/deploys/{pk}/cancel/", "/login/"),
        ("post", "/deploys/{pk}/abandon/", "/login/"),
        ("post", "/deploys/{pk}/retry-build/", "/login/"),
        # Django gives the admin's index its own login page (AdminSite sets login_url on it).
        ("get", "/admin/", "/admin/login/"),
        ("get", "/admin/deploys/deploy/", "/login/"),
        ("get", "/admin/deploys/deploy/{pk}/change/", "/login/"),
        ("post", "/admin/deploys/deploy/{pk}/delete/", "/login/"),
    ],
)
def test_anonymous_users_are_sent_to_the_login_page_and_change_nothing(
    client, application, build_failed_row, method, path, login
):
    path = path.format(pk=build_failed_row.pk)
    before = snapshot(build_failed_row)
    data = form(application, "feature/clean-merge") if method == "post" else None
    response = getattr(client, method)(path, data)
    assert response.status_code == 302
    assert response["Location"] == f"{login}?next={path}"
    assert snapshot(build_failed_row) == before
    assert Deploy.objects.count() == 1
    assert not Build.objects.exists()


def test_the_login_page_is_open_to_anonymous_users(client):
    response = client.get("/login/?next=/deploys/1/")
    assert response.status_code == 200
    html = html_of(response)
    assert 'name="username"' in html and 'name="password"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="next" value="/deploys/1/"' in html
    assert "Log out" not in html


def test_logging_in_with_the_right_password_opens_the_dashboard(client, user):
    response = client.post(
        "/login/", {"username": "alice", "password": "correct horse battery"}, follow=True
    )
    assert response.redirect_chain == [("/", 302)]
    assert response.status_code == 200
    assert response.context["user"] == user
    assert '<span class="who">alice</span>' in html_of(response)


def test_logging_in_returns_to_the_page_asked_for(client, user):
    response = client.post(
        "/login/",
        {"username": "alice", "password": "correct horse battery", "next": "/deploys/7/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/deploys/7/"


def test_logging_in_never_redirects_off_site(client, user):
    response = client.post(
        "/login/",
        {
            "username": "alice",
            "password": "correct horse battery",
            "next": "https://evil.example/",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


@pytest.mark.parametrize(
    ("username", "password"),
    [("alice", "wrong horse battery"), ("alice", ""), ("mallory", "correct horse battery")],
)
def test_logging_in_with_a_wrong_password_does_not(client, user, username, password):
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 200  # the form again, with its errors
    assert response.context["form"].errors
    assert "_auth_user_id" not in client.session
    assert client.get("/")["Location"] == "/login/?next=/"


def test_the_login_page_escapes_the_next_parameter(client):
    response = client.get("/login/", {"next": '/x"><script>alert(1)</script>'})
    assert response.status_code == 200
    html = html_of(response)
    assert "<script>alert" not in html
    assert '"><script' not in html


def test_logging_out_ends_the_session(logged_in):
    response = logged_in.post("/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert logged_in.get("/")["Location"] == "/login/?next=/"


def test_an_admin_reaches_the_admin(client, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    assert client.get("/admin/").status_code == 200


# --- CSRF ----------------------------------------------------------------------------------------


def test_queueing_without_the_csrf_token_is_refused(csrf_client, application):
    response = csrf_client.post(QUEUE_URL, form(application, "feature/clean-merge"))
    assert response.status_code == 403
    assert not Deploy.objects.exists()


@pytest.mark.parametrize("button", BUTTONS)
def test_buttons_without_the_csrf_token_are_refused(csrf_client, build_failed_row, button):
    before = snapshot(build_failed_row)
    response = csrf_client.post(f"/deploys/{build_failed_row.pk}/{button}/")
    assert response.status_code == 403
    assert snapshot(build_failed_row) == before


def test_logging_in_without_the_csrf_token_is_refused(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post("/login/", {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 403
    assert "_auth_user_id" not in client.session


def test_the_form_with_the_token_from_the_page_queues(csrf_client, application):
    # The control for the refusals above: the same client, with the page's token, gets in.
    page = csrf_client.get("/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html_of(page)).group(1)
    response = csrf_client.post(
        QUEUE_URL, {**form(application, "feature/clean-merge"), "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    deploy = Deploy.objects.get()
    assert response["Location"] == f"/deploys/{deploy.pk}/"


# --- the queue form --------------------------------------------------------------------------


def test_queueing_from_the_dashboard_creates_a_deploy_and_shows_it(logged_in, user, application):
    response = logged_in.post(
        QUEUE_URL, form(application, "feature/clean-merge", note="ship the about page")
    )
    deploy = Deploy.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/deploys/{deploy.pk}/"
    assert deploy.application == application
    assert deploy.branch == "feature/clean-merge"
    assert deploy.mode == Mode.MERGE_ONLY
    assert deploy.note == "ship the about page"
    assert deploy.requester == user
    assert deploy.state == State.QUEUED
    assert [(e.to_state, e.actor) for e in deploy.events.all()] == [(State.QUEUED, user)]

    page = logged_in.get(response["Location"])
    assert flashes(page) == [f"Queued feature/clean-merge as deploy #{deploy.pk}."]
    html = html_of(page)
    assert "number 1 in the queue" in html
    assert "ship the about page" in html


def test_the_deploy_mode_is_the_default_on_the_form(logged_in, application):
    response = logged_in.get("/")
    html = app_section(html_of(response), application.slug)
    assert re.search(r'<option value="deploy"[^>]*selected', html)
    assert 'value="restore"' not in html  # a restore starts from the release it puts back
    assert f'name="application" value="{application.slug}"' in html


def test_a_queued_deploy_takes_the_free_slot_after_commit(
    logged_in, application, django_capture_on_commit_callbacks, sent_tasks
):
    with django_capture_on_commit_callbacks(execute=True):
        logged_in.post(QUEUE_URL, form(application, "feature/clean-merge"))
    deploy = Deploy.objects.get()
    assert deploy.state == State.MERGING
    assert sent_tasks.sent == [("deploys.tasks.make_candidate", deploy.pk)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"branch": "no/such-branch"}, "There is no branch"),
        ({"branch": "--upload-pack=x"}, "may not start with"),
        ({"branch": "--upload-pack=touch /tmp/pwned"}, "may not start with"),
        ({"branch": "main"}, "main is the default branch"),
        ({"branch": "../etc/passwd"}, "may not contain"),
        ({"branch": "a b"}, "may not contain spaces"),
        ({"branch": ""}, "This field is required."),
        ({"application": "nope"}, "There is no application called"),
        ({"application": ""}, "This field is required."),
        ({"mode": "yolo"}, "Select a valid choice."),
        ({"note": "x" * 501}, "at most 500 characters"),
    ],
)
def test_bad_input_queues_nothing_and_says_why_on_the_dashboard(
    logged_in, application, data, message
):
    body = {**form(application, "feature/clean-merge"), **data}
    response = logged_in.post(QUEUE_URL, body)
    # The dashboard again, with the form as it was filled in and the errors in it.
    assert response.status_code == 400
    assert not Deploy.objects.exists()
    assert not DeployEvent.objects.exists()
    [flash] = flashes(response)
    assert flash.startswith("The deploy was not queued: ")
    assert message in flash
    assert 'class="flash error"' in html_of(response)


def test_a_branch_already_in_flight_is_not_queued_twice(logged_in, application):
    first = logged_in.post(QUEUE_URL, form(application, "feature/clean-merge"))
    assert first.status_code == 302
    deploy = Deploy.objects.get()
    second = logged_in.post(QUEUE_URL, form(application, "feature/clean-merge"))
    assert second.status_code == 400
    assert Deploy.objects.count() == 1
    flash = flashes(second)[-1]  # after the first one's "Queued ..."
    assert f"already queued or in progress as deploy #{deploy.pk}" in flash


def test_the_error_message_escapes_a_hostile_branch_name(logged_in, application):
    response = logged_in.post(
        QUEUE_URL, form(application, "x<script>alert(1)</script>"), follow=True
    )
    assert not Deploy.objects.exists()
    html = html_of(response)
    assert "There is no branch" in html
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html


@pytest.mark.parametrize("path", [QUEUE_URL, "/deploys/{pk}/cancel/", "/deploys/{pk}/abandon/"])
def test_post_only_endpoints_refuse_get(logged_in, build_failed_row, path):
    before = snapshot(build_failed_row)
    response = logged_in.get(path.format(pk=build_failed_row.pk))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert snapshot(build_failed_row) == before


def test_retry_build_refuses_get(logged_in, build_failed_row):
    before = snapshot(build_failed_row)
    assert logged_in.get(f"/deploys/{build_failed_row.pk}/retry-build/").status_code == 405
    assert snapshot(build_failed_row) == before


# --- the dashboard ---------------------------------------------------------------------------


def test_the_dashboard_without_applications_points_to_the_admin(logged_in):
    response = logged_in.get("/")
    assert response.status_code == 200
    assert "No applications yet" in html_of(response)


def test_the_dashboard_shows_the_slot_holder_and_the_queue_in_order(
    logged_in, application, user, other_user
):
    first = queue(application, user, "feature/clean-merge")
    second = queue(application, other_user, "feature/flaky-test")
    third = queue(application, user, "feature/broken-build")
    fourth = queue(application, other_user, "feature/conflicting-prices")
    actions.cancel(fourth, actor=other_user)
    assert slot.advance(application.pk).pk == first.pk

    response = logged_in.get("/")
    assert response.status_code == 200
    section = app_section(html_of(response), application.slug)
    holder = element(section, "span", "holder")
    assert linked_deploys(holder) == [first.pk]
    assert "feature/clean-merge" in holder
    assert "Merging" in holder
    # The row: how many wait and who is next; the whole queue on the application's page.
    queue_line = section[section.index("<b>Queue</b>") :]
    assert "2 waiting" in queue_line
    assert linked_deploys(element(section, "span", "next")) == [second.pk]
    assert "feature/flaky-test" in queue_line and "bob" in queue_line
    page = html_of(logged_in.get(f"/applications/{application.slug}/"))
    waiting = element(page, "ol", "queue")
    assert linked_deploys(waiting) == [second.pk, third.pk]
    assert waiting.index("feature/flaky-test") < waiting.index("feature/broken-build")
    assert "bob" in waiting and "alice" in waiting
    last = element(section, "span", "last")
    assert linked_deploys(last) == [fourth.pk]
    assert "Cancelled" in section[section.index('class="last"') :]


def test_the_dashboard_says_when_the_slot_is_free_and_nobody_waits(logged_in, application):
    section = app_section(html_of(logged_in.get("/")), application.slug)
    assert '<span class="empty">Free.</span>' in section
    assert "Nobody is waiting." in section
    assert "None yet." in section


def test_the_dashboard_shows_a_locked_application(logged_in, application, other_user):
    queue(application, other_user, "feature/clean-merge")
    slot.lock(application, actor=other_user, reason="release freeze")
    assert slot.advance(application.pk) is None
    section = app_section(html_of(logged_in.get("/")), application.slug)
    assert "Locked by bob: release freeze" in section
    assert '<span class="empty">Free.</span>' in section
    assert "1 waiting" in section and "waits for the unlock" in section


def test_the_dashboard_lists_applications_separately(logged_in, application, user):
    other = Application.objects.create(
        slug="another", name="Another", git_remote_url="/nowhere.git", default_branch="main"
    )
    mine = queue(application, user, "feature/clean-merge")
    theirs = Deploy.objects.create(application=other, branch="feature/x", requester=user)
    html = html_of(logged_in.get("/"))
    assert linked_deploys(element(app_section(html, "demo-shop"), "span", "next")) == [mine.pk]
    assert linked_deploys(element(app_section(html, "another"), "span", "next")) == [theirs.pk]


# --- the deploy page and its buttons -----------------------------------------------------------


def test_a_missing_deploy_is_404(logged_in, application):
    assert logged_in.get("/deploys/999999/").status_code == 404
    for button in BUTTONS:
        assert logged_in.post(f"/deploys/999999/{button}/").status_code == 404


def test_a_queued_deploy_offers_cancel_only(logged_in, application, user, other_user):
    queue(application, other_user, "feature/flaky-test")
    deploy = queue(application, user, "feature/clean-merge", note="second in line")
    response = logged_in.get(f"/deploys/{deploy.pk}/")
    assert response.status_code == 200
    html = html_of(response)
    assert button_actions(html) == {"cancel"}
    assert "Retry build" not in html
    assert "Abandon" not in html
    assert "number 2 in the queue" in html
    assert '<meta http-equiv="refresh"' in html
    assert "queued feature/clean-merge" in html


def test_a_failed_build_offers_retry_and_abandon(
    logged_in, application, user, drive, django_capture_on_commit_callbacks
):
    deploy = make_build_failed(application, user, drive, django_capture_on_commit_callbacks)
    assert deploy.state == State.BUILD_FAILED

    html = html_of(logged_in.get(f"/deploys/{deploy.pk}/"))
    assert button_actions(html) == {"retry-build", "abandon", "cancel"}
    assert "Retry build" in html and "Abandon" in html
    assert "in the queue" not in html
    assert "Build 1" in html
    assert "FAIL test_prices" in html
    assert deploy.candidate_sha in html


def test_retry_build_runs_the_build_again(
    logged_in, application, user, drive, django_capture_on_commit_callbacks, sent_tasks
):
    deploy = make_build_failed(application, user, drive, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(f"/deploys/{deploy.pk}/retry-build/")
    assert response.status_code == 302
    assert response["Location"] == f"/deploys/{deploy.pk}/"
    deploy.refresh_from_db()
    assert deploy.state == State.BUILDING
    assert list(deploy.builds.order_by("attempt").values_list("attempt", "status")) == [
        (1, BuildStatus.FAILED),
        (2, BuildStatus.PENDING),
    ]
    retry = deploy.events.last()
    assert (retry.from_state, retry.to_state, retry.actor) == (
        State.BUILD_FAILED,
        State.BUILDING,
        user,
    )
    assert sent_tasks.sent == [("builds.tasks.run_build", deploy.pk)]

    page = logged_in.get(f"/deploys/{deploy.pk}/")
    assert flashes(page) == ["The build runs again."]
    html = html_of(page)
    assert "Build 1" in html and "Build 2" in html
    assert button_actions(html) == {"cancel"}

    drive()  # the broken branch fails again, and keeps both logs
    deploy.refresh_from_db()
    assert deploy.state == State.BUILD_FAILED
    assert list(deploy.builds.values_list("status", flat=True)) == [BuildStatus.FAILED] * 2


def test_abandon_hands_the_slot_on(
    logged_in, application, user, other_user, drive, django_capture_on_commit_callbacks
):
    broken = make_build_failed(application, user, drive, django_capture_on_commit_callbacks)
    waiting = queue(application, other_user, "feature/clean-merge")

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post(f"/deploys/{broken.pk}/abandon/", follow=True)
    assert response.redirect_chain == [(f"/deploys/{broken.pk}/", 302)]
    assert flashes(response) == ["Abandoned: the slot is handed on."]
    broken.refresh_from_db()
    waiting.refresh_from_db()
    assert broken.state == State.ABANDONED
    assert broken.finished_at is not None
    assert waiting.state == State.MERGING
    html = html_of(response)
    assert button_actions(html) == set()
    assert '<meta http-equiv="refresh"' not in html  # a final deploy stops refreshing


def test_cancel_cancels_a_queued_deploy(logged_in, application, user):
    deploy = queue(application, user, "feature/clean-merge")
    response = logged_in.post(f"/deploys/{deploy.pk}/cancel/", follow=True)
    assert response.redirect_chain == [(f"/deploys/{deploy.pk}/", 302)]
    assert flashes(response) == ["Cancelled."]
    deploy.refresh_from_db()
    assert deploy.state == State.CANCELLED
    assert deploy.finished_at is not None
    assert deploy.started_at is None
    last = deploy.events.last()
    assert (last.from_state, last.to_state, last.actor) == (State.QUEUED, State.CANCELLED, user)
    assert button_actions(html_of(response)) == set()


def test_a_second_cancel_changes_nothing(logged_in, application, user):
    deploy = queue(application, user, "feature/clean-merge")
    logged_in.post(f"/deploys/{deploy.pk}/cancel/")
    before = snapshot(deploy)
    response = logged_in.post(f"/deploys/{deploy.pk}/cancel/")
    assert response.status_code == 302
    assert snapshot(deploy) == before
    assert deploy.events.filter(to_state=State.CANCELLED).count() == 1


@pytest.mark.parametrize(
    ("state", "button", "to"),
    [
        (State.QUEUED, "retry-build", "building"),
        (State.QUEUED, "abandon", "abandoned"),
        (State.MERGING, "abandon", "abandoned"),
        (State.MERGING, "retry-build", "building"),
        (State.MERGED, "cancel", "cancelled"),
        (State.MERGED, "retry-build", "building"),
        (State.CANCELLED, "abandon", "abandoned"),
        (State.CANCELLED, "retry-build", "building"),
        (State.MERGE_CONFLICT, "cancel", "cancelled"),
        (State.MERGING_TO_DEFAULT, "cancel", "cancelled"),
        (State.ABANDONED, "cancel", "cancelled"),
    ],
)
def test_a_button_in_the_wrong_state_says_so_and_changes_nothing(
    logged_in, application, user, state, button, to
):
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/clean-merge",
        requester=user,
        mode=Mode.MERGE_ONLY,
        state=state,
        finished_at=timezone.now() if state in FINAL_STATES else None,
    )
    before = snapshot(deploy)
    response = logged_in.post(f"/deploys/{deploy.pk}/{button}/", follow=True)
    assert response.redirect_chain == [(f"/deploys/{deploy.pk}/", 302)]
    [flash] = flashes(response)
    assert f"cannot move to {to}" in flash
    assert 'class="flash error"' in html_of(response)
    assert snapshot(deploy) == before


# --- escaping ------------------------------------------------------------------------------------

HOSTILE_BRANCH = "x<script>alert(1)</script>"
HOSTILE_NOTE = "<img src=x onerror=alert(1)>"
RAW = ("<script>alert", "<img src=x", "<b>mallory")


@pytest.fixture
def hostile_deploy(application, user):
    mallory = get_user_model().objects.create_user("<b>mallory</b>", password="irrelevant 123")
    application.name = '<script>alert("app")</script>'
    application.save()
    deploy = Deploy.objects.create(
        application=application,
        branch=HOSTILE_BRANCH,
        requester=mallory,
        mode=Mode.MERGE_ONLY,
        note=HOSTILE_NOTE,
    )
    DeployEvent.objects.create(
        deploy=deploy,
        actor=mallory,
        from_state="",
        to_state=State.QUEUED,
        message='<script>alert("event")</script>',
    )
    Build.objects.create(
        deploy=deploy,
        attempt=1,
        status=BuildStatus.FAILED,
        log='building\n<script>alert("log")</script>\n' + HOSTILE_NOTE,
    )
    finished = Deploy.objects.create(
        application=application,
        branch="y<script>alert(2)</script>",
        requester=mallory,
        state=State.CANCELLED,
        finished_at=timezone.now(),
    )
    return deploy, finished


def test_the_dashboard_escapes_branch_names_and_users(logged_in, hostile_deploy):
    deploy, finished = hostile_deploy
    html = html_of(logged_in.get("/"))
    waiting = element(html, "span", "next")
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in waiting
    assert "&lt;b&gt;mallory&lt;/b&gt;" in waiting
    assert "y&lt;script&gt;alert(2)&lt;/script&gt;" in element(html, "span", "last")
    assert "&lt;script&gt;alert(&quot;app&quot;)" in html
    for raw in RAW:
        assert raw not in html


def test_the_deploy_page_escapes_everything_it_shows(logged_in, hostile_deploy):
    deploy, _ = hostile_deploy
    html = html_of(logged_in.get(f"/deploys/{deploy.pk}/"))
    assert "x&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;script&gt;alert(&quot;event&quot;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&quot;log&quot;)&lt;/script&gt;" in html
    assert "&lt;b&gt;mallory&lt;/b&gt;" in html
    for raw in RAW:
        assert raw not in html


# --- queries ---------------------------------------------------------------------------------

FINISHED_STATES = [
    State.MERGED,
    State.CANCELLED,
    State.FAILED,
    State.MERGE_CONFLICT,
    State.ABANDONED,
    State.SUCCEEDED,
]
HOLDER_STATES = [State.BUILDING, State.BUILD_FAILED, State.MERGING]


@pytest.fixture
def many_users(user, other_user):
    carol = get_user_model().objects.create_user("carol", password="correct horse battery")
    return [user, other_user, carol]


def make_applications(application, users) -> list[Application]:
    """Three applications, one of them locked."""
    apps = [application]
    for n in (2, 3):
        apps.append(
            Application.objects.create(
                slug=f"app-{n}", name=f"App {n}", git_remote_url="/nowhere.git"
            )
        )
    slot.lock(apps[2], actor=users[2], reason="freeze")
    return apps


def add_deploys(apps, users, numbers) -> None:
    """Deploy number i of each application: 0 holds the slot, 1-3 wait, the rest finished;
    requested by different people."""
    now = timezone.now()
    for a, app in enumerate(apps):
        for i in numbers:
            if i == 0:
                state = HOLDER_STATES[a % len(HOLDER_STATES)]
            elif i <= 3:
                state = State.QUEUED
            else:
                state = FINISHED_STATES[i % len(FINISHED_STATES)]
            serial = a * 100 + i
            Deploy.objects.create(
                application=app,
                branch=f"feature/{app.slug}-{i}",
                requester=users[serial % len(users)],
                mode=Mode.DEPLOY if state == State.SUCCEEDED else Mode.MERGE_ONLY,
                state=state,
                finished_at=now - timedelta(minutes=serial) if state in FINAL_STATES else None,
            )


def count_queries(client, path) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries)


# Session and user; the applications and their change cursors (deploys/board_rows.py, for
# the rows kept for their minute); for the rows not kept, the applications again (with each one's
# last finished deploy found by an indexed subquery), the active deploys, the rollout
# phases, the holders' rollouts, the clusters' open reports, the last finished deploys, and
# the durations behind the estimates (kept for a minute): never more with more deploys or
# more applications (tests/deploys/test_dashboard_cost.py); the person's role grants, once
# (deploys/roles.py). Before the one-row-per-application dashboard: 2 + 5 + 2 per
# application + 1.
DASHBOARD_MAX_QUERIES = 2 + 2 + 7 + 1


def test_the_dashboard_costs_a_fixed_number_of_queries(
    logged_in, application, many_users, django_assert_max_num_queries
):
    add_deploys(make_applications(application, many_users), many_users, range(10))
    assert Deploy.objects.count() == 30
    with django_assert_max_num_queries(DASHBOARD_MAX_QUERIES):
        response = logged_in.get("/")
    html = html_of(response)
    # Per application its holder, the next of its 3 waiting and its last finished deploy.
    assert len(linked_deploys(html)) == 3 * 3
    assert html.count('class="holder"') == 3
    assert html.count("3 waiting") == 3
    assert "Locked by carol: freeze" in html


def test_the_dashboard_query_count_does_not_grow_with_the_deploys(
    logged_in, application, many_users
):
    apps = make_applications(application, many_users)
    add_deploys(apps, many_users, [0, 1, 4])  # one holder, one waiting, one finished each
    few = count_queries(logged_in, "/")
    add_deploys(apps, many_users, [2, 3, 5, 6, 7, 8, 9])
    assert Deploy.objects.count() == 30
    cache.clear()  # the durations behind the estimates are kept for a minute
    assert count_queries(logged_in, "/") == few


def fill_deploy_page(application, users, events: int, builds: int) -> Deploy:
    deploy = Deploy.objects.create(
        application=application,
        branch="feature/flaky-test",
        requester=users[0],
        mode=Mode.MERGE_ONLY,
        state=State.BUILD_FAILED,
        candidate_sha="a" * 40,
    )
    actors = [*users, None]
    for i in range(events):
        DeployEvent.objects.create(
            deploy=deploy,
            actor=actors[i % len(actors)],
            from_state=State.BUILDING,
            to_state=State.BUILD_FAILED if i % 2 else State.BUILDING,
            message=f"event {i}",
        )
    for attempt in range(1, builds + 1):
        Build.objects.create(
            deploy=deploy, attempt=attempt, status=BuildStatus.FAILED, log=f"log of {attempt}\n"
        )
    return deploy


# Session, user, the deploy (with application and requester), its events (with actors), its
# builds, its rollouts (with services and clusters), the application's rollout phases (for
# the progress bar), the person's role grants (the buttons: deploys/roles.py); a queued
# deploy adds one for its place in the queue.
DEPLOY_PAGE_MAX_QUERIES = 2 + 5 + 1


def test_the_deploy_page_costs_a_fixed_number_of_queries(
    logged_in, application, many_users, django_assert_max_num_queries
):
    deploy = fill_deploy_page(application, many_users, events=20, builds=3)
    with django_assert_max_num_queries(DEPLOY_PAGE_MAX_QUERIES):
        response = logged_in.get(f"/deploys/{deploy.pk}/")
    html = html_of(response)
    shown = re.findall(r'<span class="message">event (\d+)</span>', html)
    assert shown == [str(i) for i in range(20)]  # oldest first
    assert "Build 3" in html
    assert "fatcontroller" in html  # the events without an actor


def test_the_deploy_page_query_count_does_not_grow_with_events_or_builds(
    logged_in, application, many_users
):
    small = fill_deploy_page(application, many_users, events=1, builds=1)
    few = count_queries(logged_in, f"/deploys/{small.pk}/")
    small.delete()
    large = fill_deploy_page(application, many_users, events=20, builds=3)
    assert count_queries(logged_in, f"/deploys/{large.pk}/") == few
