"""The migration page (/applications/<slug>/migration/): the phases, where each service runs
now, each side's health, what blocks the next move, the proof; its move buttons (a reason,
CSRF, a refusal shown and nothing changed); everything escaped; and what it costs."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clusters import migration
from clusters.models import MigrationMove, MigrationPhase, MigrationState
from deploys.models import RolloutStatus
from deploys.states import State
from tests.migration_world import deploy_of, make_world, prove
from tests.pages import flashes, html_of, ok_html_of

S = MigrationState
pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert("x")</script>&amp;'


@pytest.fixture
def world():
    return make_world()


@pytest.fixture
def staff_client(db):
    client = Client()
    client.force_login(get_user_model().objects.create_user("sam", password="x", is_staff=True))
    return client


def url(world) -> str:
    return f"/applications/{world.application.slug}/migration/"


def move_url(world, position: int) -> str:
    return f"{url(world)}phases/{position}/move/"


def section(html: str, position: int) -> str:
    match = re.search(rf'<section class="phase" id="phase-{position}".*?</section>', html, re.S)
    assert match, f"no section for phase {position}"
    return match.group()


def service_row(html: str, name: str) -> str:
    match = re.search(rf'<tr class="phase-service" data-service="{name}">.*?</tr>', html, re.S)
    assert match, f"no row for {name}"
    return match.group()


def state_of(world, position: int) -> str:
    return MigrationPhase.objects.get(plan=world.plan, position=position).state


# --- reading -------------------------------------------------------------------------------


def test_the_page_needs_a_login(client, world):
    response = client.get(url(world))
    assert response.status_code == 302 and response.url.startswith("/login/")


def test_an_application_without_a_plan_says_how_to_add_one(logged_in, world):
    from deploys.models import Application

    Application.objects.create(slug="plain", name="Plain", git_remote_url="/x")
    html = ok_html_of(logged_in.get("/applications/plain/migration/"))
    assert "plain has no migration plan" in html
    assert "migration:" in html and "docs/app-config.md" in html
    assert 'class="phase"' not in html


def test_an_unknown_application_is_a_404(logged_in, db):
    assert logged_in.get("/applications/nowhere/migration/").status_code == 404


def test_the_application_page_links_to_it(logged_in, world):
    html = ok_html_of(logged_in.get(f"/applications/{world.application.slug}/"))
    assert f'href="{url(world)}"' in html


def test_phases_in_order_with_their_state_services_and_where_each_runs(logged_in, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    html = ok_html_of(logged_in.get(url(world)))
    positions = [int(p) for p in re.findall(r'<section class="phase" id="phase-(\d+)"', html)]
    assert positions == [1, 2, 3, 4]
    assert 'data-state="dual_running"' in section(html, 1)
    assert ">Dual running</span>" in section(html, 1) and ">Planned</span>" in section(html, 2)
    assert '<td class="runs-on">both</td>' in service_row(html, "cron")
    assert '<td class="runs-on">legacy</td>' in service_row(html, "worker")
    assert "static" in section(html, 4) and "web" in section(html, 4)

    prove(world, user, 1)
    migration.move(world.phase(1), S.CUT_OVER, actor=user, reason="proven")
    html = ok_html_of(logged_in.get(url(world)))
    assert '<td class="runs-on">ECS</td>' in service_row(html, "cron")


def test_each_sides_health_over_the_last_deploys(logged_in, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    ecs, legacy = world.ecs["cron"], world.legacy["cron"]
    deploy_of(world, user, [ecs, legacy])
    deploy_of(world, user, [ecs, legacy])
    failed = deploy_of(world, user, [ecs, legacy], state=State.ROLLED_BACK)
    failed.rollouts.filter(placement=legacy).update(status=RolloutStatus.FAILED)
    failed.rollouts.filter(placement=ecs).update(status=RolloutStatus.ROLLED_BACK)
    row = service_row(ok_html_of(logged_in.get(url(world))), "cron")
    legacy_cell = re.search(r'<td class="health-legacy">(.*?)</td>', row, re.S).group(1)
    ecs_cell = re.search(r'<td class="health-ecs">(.*?)</td>', row, re.S).group(1)
    assert ">2 out<" in legacy_cell and ">1 failed<" in legacy_cell
    assert ">2 out<" in ecs_cell and ">1 rolled back<" in ecs_cell and ">0 failed<" in ecs_cell
    assert "last 3 deploys" in ecs_cell
    assert "not deployed by Fat Controller yet" in service_row(
        ok_html_of(logged_in.get(url(world))), "worker"
    )


def test_what_blocks_the_next_move_and_the_proof_so_far(logged_in, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    prove(world, user, 1, deploys=1, hours=2)
    html = ok_html_of(logged_in.get(url(world)))
    first, second = section(html, 1), section(html, 2)
    assert "What blocks the move to cut over" in first
    assert "the ECS side is not proven yet: cron: 1 of 3 deploys and 2.0 of 24 h" in first
    assert "Proof so far" in first and "1 of 3 deploys, 2.0 of 24 h" in first
    assert "phase 1 (low-risk) is dual running" in second
    # Nothing is offered that the rules would refuse.
    assert "move-form" not in first and "move-form" not in second
    assert "Only staff may force a phase out of order." in second


def test_the_buttons_the_state_allows(logged_in, staff_client, world):
    html = ok_html_of(logged_in.get(url(world)))
    first = section(html, 1)
    assert f'action="{move_url(world, 1)}"' in first
    assert 'name="to" value="dual_running"' in first and "Move to dual running" in first
    assert "csrfmiddlewaretoken" in first and "required" in first
    assert 'data-confirm="Move to dual running: phase 1 (low-risk)?"' in first
    assert "Force to" not in html
    # Staff may force the second phase: the order is the only rule in its way.
    second = section(ok_html_of(staff_client.get(url(world))), 2)
    assert "Force to dual running" in second and 'name="force" value="on"' in second
    assert "Force to" not in section(ok_html_of(staff_client.get(url(world))), 1)


# --- moving --------------------------------------------------------------------------------


def test_a_move_posted_with_a_reason(logged_in, world):
    response = logged_in.post(move_url(world, 1), {"to": "dual_running", "reason": "cron first"})
    assert response.status_code == 302 and response.url == url(world)
    assert state_of(world, 1) == S.DUAL_RUNNING
    move = MigrationMove.objects.get()
    assert (move.actor_name, move.reason, move.forced) == ("alice", "cron first", False)
    page = logged_in.get(response.url)
    assert flashes(page) == ["Phase 1 (low-risk) is dual running now."]
    assert "cron first" in html_of(page)


def test_the_move_needs_the_csrf_token(csrf_client, world):
    response = csrf_client.post(move_url(world, 1), {"to": "dual_running", "reason": "go"})
    assert response.status_code == 403
    assert state_of(world, 1) == S.PLANNED and not MigrationMove.objects.exists()


def test_the_move_needs_a_login(client, world):
    response = client.post(move_url(world, 1), {"to": "dual_running", "reason": "go"})
    assert response.status_code == 302 and response.url.startswith("/login/")
    assert not MigrationMove.objects.exists()


@pytest.mark.parametrize(
    "data, said",
    [
        ({"to": "dual_running"}, "reason: This field is required."),
        ({"to": "dual_running", "reason": "   "}, "reason: This field is required."),
        ({"to": "flying", "reason": "go"}, "to: Select a valid choice."),
        ({"to": "dual_running", "reason": "go\x00"}, "reason: Must not contain NUL"),
    ],
)
def test_bad_input_is_shown_and_changes_nothing(logged_in, world, data, said):
    response = logged_in.post(move_url(world, 1), data)
    assert response.status_code == 400
    assert said in html_of(response)
    assert state_of(world, 1) == S.PLANNED and not MigrationMove.objects.exists()


def test_a_refused_move_is_shown_on_the_page_and_changes_nothing(logged_in, world):
    response = logged_in.post(
        move_url(world, 2), {"to": "dual_running", "reason": "workers please"}
    )
    assert response.status_code == 409
    refusal = section(html_of(response), 2)
    assert 'role="alert"' in refusal
    assert "Refused: phase 1 (low-risk) is planned: a phase starts dual running" in refusal
    assert state_of(world, 2) == S.PLANNED and not MigrationMove.objects.exists()


def test_forcing_by_someone_not_staff_is_refused(logged_in, world):
    response = logged_in.post(
        move_url(world, 2), {"to": "dual_running", "reason": "urgent", "force": "on"}
    )
    assert response.status_code == 409
    assert "only staff may force a phase out of order" in html_of(response)
    assert state_of(world, 2) == S.PLANNED


def test_staff_force_a_phase_out_of_order(staff_client, world):
    response = staff_client.post(
        move_url(world, 2), {"to": "dual_running", "reason": "urgent", "force": "on"}
    )
    assert response.status_code == 302 and state_of(world, 2) == S.DUAL_RUNNING
    assert MigrationMove.objects.get().forced
    assert "(forced)" in html_of(staff_client.get(url(world)))


def test_an_unknown_phase_is_a_404(logged_in, world):
    assert (
        logged_in.post(move_url(world, 9), {"to": "dual_running", "reason": "go"}).status_code
        == 404
    )
    assert (
        logged_in.post(move_url(world, 0), {"to": "dual_running", "reason": "go"}).status_code
        == 404
    )
    assert logged_in.get(move_url(world, 1)).status_code == 405


# --- escaping ------------------------------------------------------------------------------


def test_a_hostile_phase_name_and_reason_are_escaped(logged_in, world, user):
    MigrationPhase.objects.filter(pk=world.phase(1).pk).update(name=HOSTILE)
    world.application.name = HOSTILE
    world.application.save(update_fields=["name"])
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason=HOSTILE)
    response = logged_in.post(move_url(world, 2), {"to": "dual_running", "reason": HOSTILE})
    html = html_of(response)
    assert response.status_code == 409
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;" in html
    svg = re.search(r"<svg.*?</svg>", html, re.S).group()
    assert "<script" not in svg and "&lt;script&gt;" in svg


# --- cost ----------------------------------------------------------------------------------


def test_the_page_costs_the_same_with_more_deploys(logged_in, world, user):
    migration.move(world.phase(1), S.DUAL_RUNNING, actor=user, reason="go")
    logged_in.get(url(world))  # the session, once

    def queries() -> int:
        with CaptureQueriesContext(connection) as seen:
            assert logged_in.get(url(world)).status_code == 200
        return len(seen)

    deploy_of(world, user, [world.ecs["cron"], world.legacy["cron"]])
    few = queries()
    for _ in range(8):
        deploy_of(world, user, [world.ecs["cron"], world.legacy["cron"]])
    assert queries() == few
    # About ten a phase: the rules (blockers, proof_of) read what they judge themselves.
    assert few < 50, f"{few} queries for a plan of four phases"
