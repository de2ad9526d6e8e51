"""Browser tests: Debian's chromium, driven by Playwright, against the embedded default.

One embedded server per module (tests/embedded_server.py: `make run` in a temporary
FC_VAR_DIR on free ports), one browser per module, and a fresh browser context per test: a
laptop's viewport, the Europe/Berlin time zone (to check that times are shown in the viewer's
local time) and British English. Playwright cannot download its own browsers here, so the
tests use /usr/bin/chromium, which .ci/run installs; without it they fail, never skip.

Screenshots go to build/screenshots/ (not committed); a test that fails leaves one of its page
there too, named after the test.
"""

import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from deploys.states import FINAL_STATES, State
from devtools.demo import DEMO_SLUG
from tests.embedded_server import BASE_DIR, EmbeddedServer, embedded_for_tests

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
TIMEZONE = "Europe/Berlin"
LOCALE = "en-GB"
SCREENSHOTS = BASE_DIR / "build" / "screenshots"

EXPECT_TIMEOUT_MS = 10_000  # a page element that should be there already, or soon
DEPLOY_TIMEOUT = 90.0  # a demo deploy to its end (the build takes about 4 s)
DEPLOY_TIMEOUT_MS = int(DEPLOY_TIMEOUT * 1000)

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None, reason="the demo and the pipeline need git on PATH"
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, for the failure screenshot."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(scope="session")
def embedded(request, tmp_path_factory):
    """`make run` in a temporary FC_VAR_DIR on a free port: yields an EmbeddedServer.

    One for every browser test: starting one costs half a minute, and each test makes the
    deploys (or the applications) it looks at, never counting what others made."""
    with embedded_for_tests(request, tmp_path_factory, "e2e-var", "a browser test") as server:
        yield server


# One Playwright per module, not per session: its sync API keeps an asyncio loop marked as
# running in the main thread while it is started, and Django refuses database calls there
# (SynchronousOnlyOperation), so every test after the browser tests would fail.
@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`apt-get install -y --no-install-recommends chromium`, as .ci/run does); "
            "Playwright cannot download its own browsers here.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def browser(playwright):
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


def new_context(browser, server: EmbeddedServer, viewport=LAPTOP, **options):
    """A browser context as a viewer in Berlin would have, with the server as base URL."""
    context = browser.new_context(
        base_url=server.url,
        viewport=viewport,
        timezone_id=TIMEZONE,
        locale=LOCALE,
        **options,
    )
    context.set_default_timeout(EXPECT_TIMEOUT_MS)
    return context


@pytest.fixture
def page(request, browser, embedded):
    """A page in a new context of its own; a failed test leaves a screenshot of it."""
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    context = new_context(browser, embedded)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed and not page.is_closed():
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
            try:
                save_screenshot(page, f"failed-{name}.png")
            except Exception as exc:  # a screenshot must not hide the failure
                warnings.warn(f"no screenshot of the failed page: {exc}", stacklevel=1)
        context.close()


def save_screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def log_in(page, server: EmbeddedServer) -> None:
    """Log in through the login form, as a person would; ends on the dashboard."""
    from playwright.sync_api import expect

    page.goto("/")
    expect(page).to_have_url(re.compile(re.escape(server.url) + r"/login/"))
    page.get_by_label("User name").fill(server.username)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/")
    expect(page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')).to_be_visible()


@pytest.fixture
def logged_in_page(page, embedded):
    log_in(page, embedded)
    return page


@dataclass
class Deploys:
    """Deploys a test queued, through the API with the page's session; each is brought to an
    end after the test (a held failed build is abandoned), so the merge slot is free for the
    next test."""

    page: object
    server: EmbeddedServer
    ids: list[int] = field(default_factory=list)

    def _headers(self) -> dict[str, str]:
        cookies = {c["name"]: c["value"] for c in self.page.context.cookies()}
        return {"X-CSRFToken": cookies.get("csrftoken", ""), "Referer": f"{self.server.url}/"}

    def queue(self, branch: str, mode: str) -> int:
        response = self.page.request.post(
            f"{self.server.url}/api/deploys/",
            data={"application": DEMO_SLUG, "branch": branch, "mode": mode, "note": "e2e"},
            headers=self._headers(),
        )
        assert response.status == 201, self.server.explain(
            f"POST /api/deploys/ {branch}: {response.status} {response.text()[:2000]}"
        )
        deploy_id = response.json()["id"]
        self.ids.append(deploy_id)
        return deploy_id

    def track(self, deploy_id: int) -> int:
        self.ids.append(deploy_id)
        return deploy_id

    def get(self, deploy_id: int) -> dict:
        response = self.page.request.get(f"{self.server.url}/api/deploys/{deploy_id}/")
        assert response.status == 200, self.server.explain(
            f"GET /api/deploys/{deploy_id}/: {response.status} {response.text()[:2000]}"
        )
        return response.json()

    def post(self, deploy_id: int, action: str) -> None:
        self.page.request.post(
            f"{self.server.url}/api/deploys/{deploy_id}/{action}/", headers=self._headers()
        )

    def wait_for(self, deploy_id: int, wanted: str) -> dict:
        """Ask the API until the deploy is in `wanted`; fail at once in another final state."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        seen = []
        while True:
            deploy = self.get(deploy_id)
            if not seen or seen[-1] != deploy["state"]:
                seen.append(deploy["state"])
            if deploy["state"] == wanted:
                return deploy
            assert deploy["state"] not in FINAL_STATES and time.monotonic() < deadline, (
                self.server.explain(f"deploy #{deploy_id} never reached {wanted}: saw {seen}")
            )
            time.sleep(0.25)

    def bring_to_an_end(self) -> None:
        """Wait for each deploy to end; abandon one held after a failed build, and cancel
        one that is still waiting when the time is up."""
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        for deploy_id in self.ids:
            state = None
            while time.monotonic() < deadline:
                state = self.get(deploy_id)["state"]
                if state in FINAL_STATES:
                    break
                if state == State.BUILD_FAILED:
                    self.post(deploy_id, "abandon")
                time.sleep(0.25)
            else:
                self.post(deploy_id, "cancel")
                warnings.warn(
                    f"deploy #{deploy_id} did not end after the test (last {state}): "
                    "the next test's deploy may wait behind it",
                    stacklevel=1,
                )


@pytest.fixture
def deploys(logged_in_page, embedded):
    tracker = Deploys(logged_in_page, embedded)
    yield tracker
    if not logged_in_page.is_closed():
        tracker.bring_to_an_end()
