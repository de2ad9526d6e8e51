"""A viewer in a real browser, against the embedded default: every page reads, no button the
viewer may not press is shown (queue form, lock, migration moves), and the same actions
sent anyway from the page (the session, its CSRF token) are refused with 403 and change
nothing the API can see."""

import pytest
from playwright.sync_api import expect

from devtools.demo import DEMO_SLUG
from tests.embedded_server import embedded_environment, manage

VIEWER = "vic-the-viewer"
VIEWER_LOGIN = "a-viewers-own-words-for-tests"
# Run by `manage.py shell -c` in the embedded server's database: a person no grant names,
# so FC_DEFAULT_ROLE (viewer).
MAKE_VIEWER = f"""
from django.contrib.auth import get_user_model
people = get_user_model().objects
if not people.filter(username={VIEWER!r}).exists():
    people.create_user({VIEWER!r}, password={VIEWER_LOGIN!r})
"""


@pytest.fixture(scope="module")
def viewer(embedded):
    manage(embedded_environment(embedded.var_dir), "shell", "-c", MAKE_VIEWER)
    return VIEWER


def log_in_as_viewer(page, embedded) -> None:
    page.goto("/login/")
    page.get_by_label("User name").fill(VIEWER)
    page.get_by_label("Password").fill(VIEWER_LOGIN)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{embedded.url}/")


def sent_from(page, embedded, path: str, **body):
    """POST from the page, as its own script would: its session and CSRF token."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    headers = {"X-CSRFToken": cookies["csrftoken"], "Referer": f"{embedded.url}/"}
    if path.startswith("/api/"):
        return page.request.post(f"{embedded.url}{path}", data=body, headers=headers)
    return page.request.post(f"{embedded.url}{path}", form=body, headers=headers)


def queue_state(page, embedded) -> dict:
    answer = page.request.get(f"{embedded.url}/api/applications/{DEMO_SLUG}/queue/")
    assert answer.status == 200, answer.text()
    state = answer.json()
    return {
        "locked": state["locked"],
        "holder": (state["holder"] or {}).get("id"),
        "waiting": [deploy["id"] for deploy in state["waiting"]],
    }


def test_a_viewer_reads_every_page_and_sees_no_button_it_may_not_press(page, embedded, viewer):
    log_in_as_viewer(page, embedded)
    application = page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')
    expect(application).to_be_visible()
    expect(page.locator("header")).to_contain_text(VIEWER)
    expect(application.locator("form.queue-form")).to_have_count(0)

    page.goto(f"/applications/{DEMO_SLUG}/")
    expect(page.locator("h1")).to_contain_text(DEMO_SLUG)
    expect(page.locator(f'form[action="/applications/{DEMO_SLUG}/lock/"]')).to_have_count(0)
    expect(page.locator(f'form[action="/applications/{DEMO_SLUG}/unlock/"]')).to_have_count(0)

    page.goto(f"/applications/{DEMO_SLUG}/migration/")
    expect(page.locator("section.phase").first).to_be_visible()
    expect(page.locator("form.move-form")).to_have_count(0)

    history = page.goto("/history/")
    assert history.status == 200
    # The audit log is for maintainers: a viewer is told so, not shown it.
    audit = page.goto("/audit/")
    assert audit.status == 403
    expect(page.locator("body")).to_contain_text("You may not")


def test_a_viewers_actions_sent_anyway_are_refused_and_change_nothing(page, embedded, viewer):
    log_in_as_viewer(page, embedded)
    before = queue_state(page, embedded)

    answers = {
        "queue (page)": sent_from(
            page, embedded, "/deploys/queue/", application=DEMO_SLUG, branch="main", mode="deploy"
        ),
        "queue (API)": sent_from(
            page, embedded, "/api/deploys/", application=DEMO_SLUG, branch="main"
        ),
        "lock (page)": sent_from(
            page, embedded, f"/applications/{DEMO_SLUG}/lock/", reason="a viewer tried"
        ),
        "lock (API)": sent_from(
            page, embedded, f"/api/applications/{DEMO_SLUG}/lock/", reason="a viewer tried"
        ),
        "migration move (API)": sent_from(
            page,
            embedded,
            f"/api/applications/{DEMO_SLUG}/migration/phases/1/move/",
            to="dual_running",
            reason="a viewer tried",
        ),
    }

    assert {what: answer.status for what, answer in answers.items()} == dict.fromkeys(answers, 403)
    assert "You may not" in answers["lock (API)"].text()
    assert queue_state(page, embedded) == before
