"""The dashboard and the deploy page in a real browser, against the embedded default.

What a person does: log in; queue a branch from the dashboard and watch its deploy page follow
it to the end, the build log growing as the build runs, without reloading; retry a flaky build
from the keyboard; read why a deploy was rolled back; read times in their own time zone.

The pages' side of it (the DOM these tests rely on):
- deploy page: `#deploy-state` holds the state's label, `data-state` its value, and follows
  the deploy in place; buttons are in `form.js-action` and post without a reload, the result
  in `#flash` (role=status); the timeline is `ol.timeline > li` with `.message`; build logs
  are `pre.log[data-attempt="N"]`; the rollout is `table.rollout`; `<time datetime>` shows
  the viewer's local time once converted, marked `data-local`.
- dashboard: `section.application[data-slug]` with `form.queue-form` (branch, a `select`
  mode, note, "Queue"), which lands on the new deploy's page.

Each test queues its own deploy and waits for its end (tests/e2e/conftest.py abandons one
held after a failed build), so the merge slot is free for the next.
"""

import re
from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from deploys.states import State
from devtools.demo import DEMO_SLUG, OOM_BRANCH

from .conftest import (
    DEPLOY_TIMEOUT_MS,
    LAPTOP,
    PHONE,
    TIMEZONE,
    log_in,
    new_context,
    save_screenshot,
)

CLEAN_BRANCH = "feature/clean-merge"
FLAKY_BRANCH = "feature/flaky-test"
CONFLICTING_BRANCH = "feature/conflicting-prices"
FLAKY_FAILURE = "FAIL test_checkout: timed out waiting for the payment stub (flaky)"
BUILD_STARTS = "== building demo-shop"
BUILD_PASSES = "== all checks passed"
# The demo's services, rollout phase 1 first (mailer, worker, poller), then static, then web.
DEMO_SERVICES = ("mailer", "worker", "poller", "static", "web")

# Every text a build log of the page shows, as it changes: one sample per change, taken by a
# MutationObserver from the first byte of each page load (an init script), so a log that grew
# while the page was open is seen even if the build was quick.
LOG_RECORDER = """
(() => {
  const samples = [];
  const last = {};
  window.__log_samples = samples;
  const look = () => {
    document.querySelectorAll("pre.log[data-attempt]").forEach((pre) => {
      const attempt = pre.getAttribute("data-attempt");
      const text = pre.textContent;
      if (last[attempt] !== text) {
        last[attempt] = text;
        const state = document.getElementById("deploy-state");
        samples.push({attempt, text, state: state && state.getAttribute("data-state")});
      }
    });
  };
  new MutationObserver(look).observe(document, {
    childList: true, subtree: true, characterData: true,
  });
})();
"""


def deploy_id_of(page, server) -> int:
    match = re.fullmatch(re.escape(server.url) + r"/deploys/(\d+)/", page.url)
    assert match, f"not a deploy page: {page.url}"
    return int(match[1])


def open_deploy_page(page, deploy_id: int):
    """The deploy's page, marked so that a reload (which would clear the mark) shows."""
    page.goto(f"/deploys/{deploy_id}/")
    page.evaluate("window.__still_here = true")
    return page.locator("#deploy-state")


def assert_not_reloaded(page) -> None:
    assert page.evaluate("window.__still_here === true"), (
        "the page was reloaded (window.__still_here is gone): it must update itself in place"
    )


def test_log_in(page, embedded):
    page.goto("/")
    expect(page).to_have_url(re.compile(re.escape(embedded.url) + r"/login/"))
    page.get_by_label("User name").fill(embedded.username)
    page.get_by_label("Password").fill(embedded.password)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(f"{embedded.url}/")
    expect(page.locator("header")).to_contain_text(embedded.username)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    application = page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')
    expect(application).to_have_count(1)
    expect(application.locator("form.queue-form")).to_be_visible()


def test_queue_a_merge_only_deploy_from_the_dashboard_and_watch_it_merge_in_place(
    logged_in_page, deploys, embedded
):
    page = logged_in_page
    page.add_init_script(LOG_RECORDER)
    form = page.locator(f'section.application[data-slug="{DEMO_SLUG}"] form.queue-form')
    form.locator("input[name=branch]").fill(CLEAN_BRANCH)
    form.locator("select[name=mode]").select_option("merge_only")
    form.locator("[name=note]").fill("queued from the dashboard by the browser test")
    form.get_by_role("button", name="Queue").click()

    # The browser lands on the new deploy's page, which says it was queued.
    expect(page).to_have_url(re.compile(re.escape(embedded.url) + r"/deploys/\d+/$"))
    deploy_id = deploys.track(deploy_id_of(page, embedded))
    page.evaluate("window.__still_here = true")
    expect(
        page.get_by_role("status").filter(has_text=f"Queued {CLEAN_BRANCH} as deploy #{deploy_id}")
    ).to_be_visible()

    # It follows the deploy to its end by itself.
    state = page.locator("#deploy-state")
    expect(state).to_have_attribute("data-state", State.MERGED, timeout=DEPLOY_TIMEOUT_MS)
    expect(state).to_have_text("Merged")
    assert_not_reloaded(page)
    # Its owner is told, in the page, that it ended.
    expect(page.locator("#flash")).to_contain_text(f"Deploy #{deploy_id} ended: Merged.")

    # The build log grew while the page was open: it showed the build's start before the
    # build had passed, then the rest.
    log = page.locator('pre.log[data-attempt="1"]')
    expect(log).to_contain_text(BUILD_PASSES)
    samples = [s for s in page.evaluate("window.__log_samples") if s["attempt"] == "1"]
    partial = [s for s in samples if BUILD_STARTS in s["text"] and BUILD_PASSES not in s["text"]]
    assert partial, (
        "the build log never showed part of the build: it did not stream while the build ran; "
        f"what it showed: {samples}"
    )


def test_retry_a_failed_build_from_the_keyboard_without_a_reload(logged_in_page, deploys):
    page = logged_in_page
    dialogs = []

    def accept(dialog):
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    deploy_id = deploys.queue(FLAKY_BRANCH, "merge_only")
    state = open_deploy_page(page, deploy_id)

    # The first build meets the flaky test; the page says so by itself.
    expect(state).to_have_attribute("data-state", State.BUILD_FAILED, timeout=DEPLOY_TIMEOUT_MS)
    expect(state).to_have_text("Build failed")
    expect(page.locator('pre.log[data-attempt="1"]')).to_contain_text(FLAKY_FAILURE)
    assert_not_reloaded(page)

    # Retry build is reachable with Tab from the top of the page, and Enter presses it.
    retry = page.locator("form.js-action").get_by_role("button", name="Retry build")
    expect(retry).to_be_visible()
    page.evaluate("document.activeElement && document.activeElement.blur()")
    for _ in range(100):
        page.keyboard.press("Tab")
        if retry.evaluate("button => button === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the Retry build button")
    expect(retry).to_be_focused()
    page.keyboard.press("Enter")

    flash = page.locator("#flash")
    expect(flash).to_have_attribute("role", "status")
    expect(flash).to_have_text(re.compile(r"\S"))

    # The second attempt builds, passes and merges, all on the same page.
    expect(state).to_have_attribute("data-state", State.MERGED, timeout=DEPLOY_TIMEOUT_MS)
    expect(state).to_have_text("Merged")
    assert_not_reloaded(page)
    expect(page.locator('pre.log[data-attempt="2"]')).to_contain_text(BUILD_PASSES)
    expect(page.locator('pre.log[data-attempt="1"]')).to_contain_text(FLAKY_FAILURE)
    expect(page.get_by_role("button", name="Retry build")).to_have_count(0)
    assert deploys.get(deploy_id)["state"] == State.MERGED, f"dialogs seen: {dialogs}"


def test_a_rollback_is_explained_on_the_deploy_page(logged_in_page, deploys):
    page = logged_in_page
    deploy_id = deploys.queue(OOM_BRANCH, "deploy")
    state = open_deploy_page(page, deploy_id)

    expect(state).to_have_text("Rolled back", timeout=DEPLOY_TIMEOUT_MS)

    # The timeline says why: the new image ran out of memory on ECS.
    reasons = page.locator("ol.timeline > li .message").filter(has_text="OutOfMemoryError")
    expect(reasons.first).to_be_visible()
    # The rollout table shows every service on the sides the migration plan says: rollout
    # phase 1 (the mailer on ECS, the worker on both, the poller on its legacy job) went out
    # and came back, the rest never.
    rollout = page.locator("table.rollout")
    expect(rollout).to_be_visible()
    for service in DEMO_SERVICES:
        expect(rollout.locator(f'tbody[data-service="{service}"]')).to_be_visible()
    for service in DEMO_SERVICES[:3]:
        expect(rollout.locator(f'tbody[data-service="{service}"]')).to_contain_text("Rolled back")
    worker = rollout.locator('tbody[data-service="worker"]')
    expect(worker).to_contain_text("both sides")
    expect(worker).to_contain_text("legacy job legacy-deploy-worker")
    expect(worker).to_contain_text("demo-shop-worker on demo")
    save_screenshot(page, "deploy.png")


def test_times_are_shown_in_the_viewers_time_zone(logged_in_page, deploys):
    page = logged_in_page
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == TIMEZONE
    deploy_id = deploys.queue(CONFLICTING_BRANCH, "merge_only")
    deploys.wait_for(deploy_id, State.MERGE_CONFLICT)
    page.goto(f"/deploys/{deploy_id}/")

    expect(page.locator("ol.timeline time[data-local]").first).to_be_attached()
    times = page.locator("time[data-local]")
    checked = []
    berlin = ZoneInfo(TIMEZONE)
    for index in range(times.count()):
        element = times.nth(index)
        moment = datetime.fromisoformat(element.get_attribute("datetime"))
        assert moment.tzinfo is not None, element.get_attribute("datetime")
        local = moment.astimezone(berlin)
        text = element.inner_text()
        # 24-hour (en-GB) or 12-hour clock; Berlin is never at UTC's time of day.
        hour12 = local.hour % 12 or 12
        shown = re.search(
            rf"\b0?{local.hour}:{local.minute:02d}\b|\b{hour12}:{local.minute:02d}\b", text
        )
        assert shown, f"{text!r} does not show {local:%H:%M} {TIMEZONE} time of {moment}"
        assert "UTC" not in text, text
        checked.append((moment.isoformat(), text))
    assert checked, "no converted <time> on the page"


def test_the_dashboard_on_a_laptop_and_a_phone(logged_in_page, browser, embedded):
    page = logged_in_page
    page.goto("/")
    application = page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')
    expect(application).to_be_visible()
    assert page.viewport_size == LAPTOP
    save_screenshot(page, "dashboard.png")

    context = new_context(browser, embedded, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        phone = context.new_page()
        log_in(phone, embedded)
        application = phone.locator(f'section.application[data-slug="{DEMO_SLUG}"]')
        expect(application.get_by_role("button", name="Queue")).to_be_visible()
        save_screenshot(phone, "dashboard-phone.png")
        overflow = phone.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the dashboard is {overflow}px wider than a phone's screen"
    finally:
        context.close()


def test_the_dashboards_polls_answer_304_while_nothing_changes(logged_in_page):
    page = logged_in_page

    def unchanged(response) -> bool:
        return "/live/dashboard/" in response.url and response.status == 304

    # The first poll gets the rows and an ETag; a later one, sent back with it, gets a 304
    # (within the minute: a new one brings every row again, deploys/live.py).
    with page.expect_response(unchanged, timeout=75_000):
        page.goto("/")
    expect(page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')).to_be_visible()
