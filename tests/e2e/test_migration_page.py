"""The migration page in a real browser, against the embedded default: move a phase with a
reason, through its confirmation, and see the chart and the table of shares change.

The page's side of it: each phase is `section.phase[data-state]` (id phase-N); a move button
is a `<details class="move-step">` holding `form.move-form` (a reason, then the button), which
asks window.confirm first; the chart is `svg.share-chart` (its <desc> says the shares now, a
`circle.move` per move) and `table.share-table` has a `tr.share-row` per point.

The plan is an application of its own, made in the embedded server's database, so the test
does not depend on the demo's plan and leaves the demo's deploys alone.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.embedded_server import embedded_environment, manage

from .conftest import log_in, new_context, save_screenshot

SLUG = "migrating-shop"
NO_JS_SLUG = "migrating-without-js"
# Run by `manage.py shell -c` in the embedded server's database: two phases of one service
# each, both sides placed, all planned.
MAKE_PLANS = f"""
from clusters.models import *
from deploys.models import Application

def make(slug):
    app = Application.objects.create(
        slug=slug, name="Migrating shop", git_remote_url="/nowhere.git"
    )
    cluster = Cluster.objects.create(name="e2e-" + slug)
    plan = MigrationPlan.objects.create(application=app)
    for position, name, service in ((1, "low-risk", "cron"), (2, "workers", "worker")):
        phase = MigrationPhase.objects.create(plan=plan, position=position, name=name)
        svc = Service.objects.create(
            application=app, name=service, process_type="worker", phase=position,
            migration_phase=phase,
        )
        Placement.objects.create(
            service=svc, cluster=cluster, ecs_service_name=slug + "-" + service
        )
        Placement.objects.create(service=svc, kind="legacy", legacy_job="deploy-" + service)

make({SLUG!r})
make({NO_JS_SLUG!r})
"""


@pytest.fixture(scope="module")
def plan(embedded):
    manage(embedded_environment(embedded.var_dir), "shell", "-c", MAKE_PLANS)
    return f"/applications/{SLUG}/migration/"


def share_rows(page) -> list[list[str]]:
    rows = page.locator("table.share-table tr.share-row")
    return [
        [cell.strip() for cell in rows.nth(i).locator("td").all_inner_texts()[1:]]
        for i in range(rows.count())
    ]


def test_move_a_phase_with_a_reason_and_see_the_chart_and_table_change(page, embedded, plan):
    log_in(page, embedded)
    page.goto(f"/applications/{SLUG}/")
    page.get_by_role("link", name="Migration plan").click()
    expect(page).to_have_url(f"{embedded.url}{plan}")

    first = page.locator("section#phase-1")
    second = page.locator("section#phase-2")
    chart = page.locator("svg.share-chart")
    expect(first).to_have_attribute("data-state", "planned")
    expect(chart).to_have_attribute("role", "img")
    expect(chart.locator("desc")).to_contain_text("Now 0% of the processes run on ECS")
    expect(chart.locator("circle.move")).to_have_count(0)
    assert share_rows(page) == [["before the first move", "0%", "0%"]]
    # The second phase waits for the first, and the page says why; the demo's first login is
    # staff, so it is offered a force (out of order, with a reason) and no plain move.
    expect(second.locator("ul.blockers")).to_contain_text("phase 1 (low-risk) is planned")
    expect(second.get_by_text("Move to dual running…")).to_have_count(0)
    expect(second.get_by_text("Force to dual running…")).to_have_count(1)

    # The move is a step to open, a reason, and a confirmation; saying no changes nothing.
    first.get_by_text("Move to dual running…").click()
    first.get_by_label("Reason (required, at most 1000 characters)").fill(
        "cron is the lowest risk: the browser test starts it"
    )
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    first.get_by_role("button", name="Move to dual running").click()
    expect(first).to_have_attribute("data-state", "planned")
    assert asked == ["Move to dual running: phase 1 (low-risk)?"]

    page.once("dialog", lambda dialog: dialog.accept())
    first.get_by_role("button", name="Move to dual running").click()

    expect(page.locator("#flash")).to_contain_text("Phase 1 (low-risk) is dual running now.")
    expect(first).to_have_attribute("data-state", "dual_running")
    expect(first.locator("td.runs-on")).to_have_text("both")
    expect(first.locator(".proof")).to_contain_text("cron: 0 of 3 deploys")
    expect(chart.locator("desc")).to_contain_text(
        "Now 50% of the processes run on ECS and 0% on ECS only, after 1 move."
    )
    expect(chart.locator("circle.move")).to_have_count(1)
    assert share_rows(page) == [
        ["before the first move", "0%", "0%"],
        ["phase 1 (low-risk): planned to dual running", "50%", "0%"],
    ]
    expect(page.locator("table.move-log")).to_contain_text(
        "cron is the lowest risk: the browser test starts it"
    )
    # The step line climbed: its path now has a vertical segment to the 50% line.
    path = chart.locator("path.share-on-ecs").get_attribute("d")
    assert re.search(r" V\d", path), path
    save_screenshot(page, "migration-page.png")


def test_without_javascript_staff_force_a_phase_out_of_order(browser, embedded, plan):
    """No confirmation dialog and no script: the two steps (open, give a reason, press) are
    plain HTML, and the form posts as any form does."""
    context = new_context(browser, embedded, java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, embedded)
        page.goto(f"/applications/{NO_JS_SLUG}/migration/")
        second = page.locator("section#phase-2")
        second.get_by_text("Force to dual running…").click()
        second.get_by_label("Reason (required, at most 1000 characters)").fill(
            "workers first: forced without JavaScript"
        )
        second.get_by_role("button", name="Force to dual running").click()
        expect(page.locator("#flash")).to_contain_text("Phase 2 (workers) is dual running now.")
        expect(second).to_have_attribute("data-state", "dual_running")
        expect(page.locator("table.move-log")).to_contain_text("(forced)")
        assert share_rows(page)[-1] == [
            "phase 2 (workers): planned to dual running (forced)",
            "50%",
            "0%",
        ]
    finally:
        context.close()
