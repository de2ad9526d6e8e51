"""The dashboard of a team with ten applications, in a real browser, against the embedded
default: one compact row each, with its lock, slot and last deploy, on a laptop without
scrolling sideways; its screenshot is the README's (build/screenshots/dashboard-ten.png,
copied to docs/screenshots/).

The extra applications are made in the embedded server's database and removed after, so the
other browser tests see the demo as it was."""

import pytest
from playwright.sync_api import expect

from devtools.demo import DEMO_SLUG
from tests.embedded_server import embedded_environment, manage

from .conftest import save_screenshot

TEAM = 10
PREFIX = "team-"
# Run by `manage.py shell -c`: applications up to TEAM in all, each with a few finished
# deploys (succeeded, failed, rolled back), one locked for a release freeze.
MAKE_TEAM = f"""
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from deploys.models import Application, Deploy

names = ["billing", "search", "checkout", "accounts", "mailer", "catalogue", "reports",
         "payments", "inventory", "shipping", "reviews", "ledger"]
admin = get_user_model().objects.filter(is_staff=True).order_by("pk").first()
now = timezone.now()
missing = {TEAM} - Application.objects.count()
for n, name in enumerate(names[:max(missing, 0)]):
    app = Application.objects.create(
        slug={PREFIX!r} + name, name=name.title(), git_remote_url="/nowhere.git"
    )
    outcomes = ["succeeded", "succeeded", "failed", "rolled_back", "succeeded"]
    for k, state in enumerate(outcomes[n % 3:]):
        finished = now - timedelta(hours=k * 5 + n, minutes=7 * n)
        Deploy.objects.create(
            application=app, branch=f"feature/{{name}}-{{k}}", requester=admin, state=state,
            started_at=finished - timedelta(minutes=4 + n % 4), finished_at=finished,
        )
    if n == 2:
        Application.objects.filter(pk=app.pk).update(
            locked=True, lock_reason="release freeze until Friday", locked_by=admin,
            locked_at=now - timedelta(hours=2),
        )
print(Application.objects.count())
"""
REMOVE_TEAM = f"""
from deploys.models import Application, Deploy
Deploy.objects.filter(application__slug__startswith={PREFIX!r}).delete()
Application.objects.filter(slug__startswith={PREFIX!r}).delete()
"""


@pytest.fixture
def team(embedded):
    environment = embedded_environment(embedded.var_dir)
    count = int(manage(environment, "shell", "-c", MAKE_TEAM).strip().splitlines()[-1])
    try:
        yield count
    finally:
        manage(environment, "shell", "-c", REMOVE_TEAM)


def test_ten_applications_at_a_glance_on_a_laptop(logged_in_page, team):
    page = logged_in_page
    assert team == TEAM
    page.goto("/")
    rows = page.locator("section.application")
    expect(rows).to_have_count(TEAM)
    expect(page.locator(f'section.application[data-slug="{DEMO_SLUG}"]')).to_be_visible()
    locked = page.locator(f'section.application[data-slug="{PREFIX}checkout"]')
    expect(locked.locator(".locked")).to_contain_text("release freeze until Friday")
    billing = page.locator(f'section.application[data-slug="{PREFIX}billing"]')
    expect(billing.locator(".last .state")).to_have_text("Succeeded")
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the dashboard is {overflow}px wider than the laptop's screen"
    save_screenshot(page, "dashboard-ten.png")
