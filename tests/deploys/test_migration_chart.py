"""The share of processes on ECS over time (deploys.migration_page.shares_over_time) and its
SVG (deploys.migration_chart): the figures after each move, well-formed and accessible SVG,
and the page's table of the same figures."""

import re
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from django.utils import timezone

from clusters import migration
from clusters.models import MigrationMove, MigrationPhase, MigrationState
from deploys.migration_chart import share_chart
from deploys.migration_page import SharePoint, migration_page, shares_over_time
from tests.migration_world import make_world, prove
from tests.pages import ok_html_of

S = MigrationState
SVG = "{http://www.w3.org/2000/svg}"
pytestmark = pytest.mark.django_db


def parsed(svg) -> ElementTree.Element:
    """The chart as XML: it must be one well-formed document (our own output, not input)."""
    return ElementTree.fromstring(str(svg))  # noqa: S314 - the SVG this module wrote


def walk_two_phases(world, user):
    """Phase 1 (1 of 5 processes) dual running then cut over; phase 2 (1 more) dual running."""
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="cron first")
    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="proven")
    migration.move(world.phase(2), S.DUAL_RUNNING, actor=user, reason="workers next")


def test_the_share_at_the_start_and_after_each_move(user):
    world = make_world()
    walk_two_phases(world, user)
    page = migration_page(world.application, user)
    assert [(p.move and p.move.to_state, p.on_ecs, p.ecs_only) for p in page.shares] == [
        (None, 0.0, 0.0),
        (S.DUAL_RUNNING, 0.2, 0.0),
        (S.CUT_OVER, 0.2, 0.2),
        (S.DUAL_RUNNING, 0.4, 0.2),
    ]
    times = [p.at for p in page.shares]
    # The start is when the plan was made, before the first move.
    assert times == sorted(times) and times[0] == min(
        MigrationPhase.objects.values_list("state_since", flat=True)
    )


def test_a_phase_weighs_as_many_processes_as_it_has_services(user):
    world = make_world(proof_deploys=0, proof_hours=0)
    MigrationPhase.objects.filter(plan=world.plan).exclude(position=4).update(state=S.CUT_OVER)
    migration.move(world.phase(4), S.DUAL_RUNNING, actor=user, reason="the webs")
    shares = migration_page(world.application, user).shares
    # Phases 1-3 were cut over by hand (no moves): they count as cut over from the start.
    assert [(p.on_ecs, p.ecs_only) for p in shares] == [(0.6, 0.6), (1.0, 0.6)]


def test_a_plan_never_moved_starts_at_its_phases_earliest_state_since(user):
    world = make_world()
    long_ago = timezone.now() - timedelta(days=9)
    MigrationPhase.objects.filter(pk=world.phase(2).pk).update(state_since=long_ago)
    phases = list(world.plan.phases.order_by("position"))
    (start,) = shares_over_time(phases, [], {p.pk: 1 for p in phases})
    assert (start.at, start.on_ecs, start.ecs_only, start.move) == (long_ago, 0.0, 0.0, None)
    assert shares_over_time([], [], {}) == []


def test_the_svg_is_well_formed_accessible_and_has_both_series(user):
    world = make_world()
    walk_two_phases(world, user)
    page = migration_page(world.application, user)
    svg = str(share_chart(page.shares, page.now, subject="Shop"))
    root = parsed(svg)
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "share-chart-title share-chart-desc"
    assert root.find(f"{SVG}title").text == "Share of Shop's processes on ECS over time"
    desc = root.find(f"{SVG}desc").text
    assert "Now 40% of the processes run on ECS and 20% on ECS only, after 3 moves." in desc
    paths = {p.get("class"): p.get("d") for p in root.iter(f"{SVG}path")}
    assert set(paths) == {"share-on-ecs", "share-ecs-only"}
    # A step line: each move is a horizontal then a vertical segment; a flat end to now.
    assert paths["share-on-ecs"].count(" H") == 4 and paths["share-on-ecs"].count(" V") == 3
    dots = [c.find(f"{SVG}title").text for c in root.iter(f"{SVG}circle")]
    assert len(dots) == 3
    assert dots[2].endswith("phase 2 (workers): planned to dual running: 40% on ECS, 20% ECS only")
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"0%", "50%", "100%"} <= set(labels)
    assert "on ECS only (cut over or done)" in labels


def test_the_higher_share_is_drawn_higher():
    now = timezone.now()

    class Move:
        from_state, to_state, forced = S.PLANNED, S.DUAL_RUNNING, False
        phase = type("P", (), {"position": 1, "name": "one"})()

    points = [
        SharePoint(now - timedelta(hours=2), None, 0.0, 0.0),
        SharePoint(now - timedelta(hours=1), Move(), 1.0, 0.0),
    ]
    root = parsed(share_chart(points, now, subject="x"))
    (dot,) = root.iter(f"{SVG}circle")
    grid = {t.text: float(t.get("y")) for t in root.iter(f"{SVG}text") if t.text.endswith("%")}
    assert abs(float(dot.get("cy")) + 4 - grid["100%"]) < 0.2  # the dot sits on 100%
    assert grid["100%"] < grid["0%"]


def test_a_hostile_name_stays_text_in_the_svg(user):
    world = make_world()
    MigrationPhase.objects.filter(pk=world.phase(1).pk).update(name="</title><script>x</script>")
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    page = migration_page(world.application, user)
    svg = str(share_chart(page.shares, page.now, subject='"><script>y</script>'))
    root = parsed(svg)  # still one well-formed SVG
    assert (
        root.find(f"{SVG}title").text
        == "Share of \"><script>y</script>'s processes on ECS over time"
    )
    assert not list(root.iter("script")) and not list(root.iter(f"{SVG}script"))
    assert "</title><script>x</script>" in root.find(f"{SVG}circle").find(f"{SVG}title").text


def test_the_page_shows_the_chart_and_a_table_of_the_same_figures(logged_in, user):
    world = make_world()
    walk_two_phases(world, user)
    html = ok_html_of(logged_in.get("/applications/shop/migration/"))
    assert html.count("<svg") == 1
    rows = re.findall(
        r'<tr class="share-row"><td><time datetime="[^"]+">([^<]+)</time></td>'
        r'<td class="share-move">([^<]+)</td><td class="share-on-ecs">([^<]+)</td>'
        r'<td class="share-ecs-only">([^<]+)</td></tr>',
        html,
    )
    assert [row[1:] for row in rows] == [
        ("before the first move", "0%", "0%"),
        ("phase 1 (low-risk): planned to dual running", "20%", "0%"),
        ("phase 1 (low-risk): dual running to cut over", "20%", "20%"),
        ("phase 2 (workers): planned to dual running", "40%", "20%"),
    ]
    first_move = MigrationMove.objects.order_by("at").first()
    assert rows[1][0] == first_move.at.strftime("%Y-%m-%d %H:%M UTC")
    assert "of the plan's 5 processes" in html
