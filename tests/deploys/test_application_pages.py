"""The application pages: the list, one application's settings, services, placements and
current revisions, the lock and unlock buttons and their API, and what a page costs."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from clusters.models import Cluster, Placement, PlacementKind, ProcessType, Service
from deploys import applications, slot
from deploys.models import Application, Deploy, DeployEvent, RolloutStatus, ServiceRollout
from deploys.states import State
from tests.pages import flashes, html_of, linked_deploys

R = RolloutStatus
ARN = "arn:aws:ecs:eu-west-1:123456789012:task-definition/"


# --- helpers -------------------------------------------------------------------------------


@pytest.fixture
def cluster(db):
    return Cluster.objects.create(name="prod-eu", region="eu-west-1")


def page_of(client, application) -> str:
    response = client.get(f"/applications/{application.slug}/")
    assert response.status_code == 200
    return html_of(response)


def service(application, name, phase=1, process_type=ProcessType.WEB, **extra) -> Service:
    return Service.objects.create(
        application=application, name=name, phase=phase, process_type=process_type, **extra
    )


def ecs(service, cluster, name, container="app") -> Placement:
    return Placement.objects.create(
        service=service, cluster=cluster, ecs_service_name=name, container_name=container
    )


def legacy(service, job) -> Placement:
    return Placement.objects.create(service=service, kind=PlacementKind.LEGACY, legacy_job=job)


def deploy(application, user, state=State.SUCCEEDED, branch="feature/x", **extra) -> Deploy:
    finished = timezone.now() if state not in (State.QUEUED, State.DEPLOYING) else None
    return Deploy.objects.create(
        application=application,
        branch=branch,
        requester=user,
        state=state,
        finished_at=finished,
        **extra,
    )


def rollout(deploy, placement, status, previous="", new="") -> ServiceRollout:
    return ServiceRollout.objects.create(
        deploy=deploy,
        placement=placement,
        phase=placement.service.phase,
        status=status,
        revision_before=ARN + previous if previous else "",
        revision_made=ARN + new if new else "",
    )


def row_of(html: str, placement: Placement) -> str:
    match = re.search(
        rf'<tr class="placement ([a-z_ -]+)" id="placement-{placement.pk}">(.*?)</tr>', html, re.S
    )
    assert match, f"no row for placement {placement.pk}"
    return match.group(1) + " " + match.group(2)


def current_cell(html: str, placement: Placement) -> str:
    match = re.search(r'<td class="current">(.*?)</td>', row_of(html, placement), re.S)
    assert match
    return " ".join(match.group(1).split())


def list_row(html: str, slug: str) -> str:
    match = re.search(rf'<tr id="app-{slug}">(.*?)</tr>', html, re.S)
    assert match, f"no row for {slug}"
    return match.group(1)


# --- the list ------------------------------------------------------------------------------


def test_the_list_shows_each_application_its_lock_and_its_slot(
    logged_in, application, user, other_user
):
    other = Application.objects.create(
        slug="another", name="Another", git_remote_url="/nowhere.git", default_branch="main"
    )
    slot.lock(other, actor=other_user, reason="release freeze")
    holder = deploy(application, user, state=State.BUILDING, branch="feature/holding")
    deploy(application, other_user, state=State.QUEUED, branch="feature/waiting")
    deploy(application, other_user, state=State.QUEUED, branch="feature/waiting-too")

    response = logged_in.get("/applications/")
    assert response.status_code == 200
    html = html_of(response)
    mine = list_row(html, "demo-shop")
    assert 'href="/applications/demo-shop/"' in mine
    assert "Open" in mine and "Locked" not in mine
    assert linked_deploys(mine) == [holder.pk]
    assert "feature/holding" in mine
    assert '<td class="waiting">2</td>' in mine
    theirs = list_row(html, "another")
    assert 'href="/applications/another/"' in theirs
    assert "Locked" in theirs and "bob" in theirs and "release freeze" in theirs
    since = Application.objects.get(slug="another").locked_at
    assert since.strftime("%Y-%m-%d %H:%M") in theirs
    assert "Free" in theirs
    assert '<td class="waiting">0</td>' in theirs


def test_the_list_without_applications_points_to_the_admin(logged_in):
    html = html_of(logged_in.get("/applications/"))
    assert "No applications yet" in html
    assert 'href="/admin/"' in html


def test_the_list_costs_the_same_queries_for_many_applications(logged_in, application, user):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert logged_in.get("/applications/").status_code == 200
        return len(queries)

    deploy(application, user, state=State.MERGING)
    few = count()
    for n in range(6):
        app = Application.objects.create(slug=f"app-{n}", name=f"App {n}", git_remote_url="/x.git")
        slot.lock(app, actor=user, reason="r")
        deploy(app, user, state=State.BUILDING, branch=f"feature/{n}")
        deploy(app, user, state=State.QUEUED, branch=f"feature/q{n}")
    assert count() == few


# --- the page: settings, services, placements ------------------------------------------------


def test_the_page_shows_the_settings(logged_in, application):
    Application.objects.filter(pk=application.pk).update(
        image_repository="123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop",
        phase_timeout_seconds=900,
        soak_seconds=90,
        build_hold_minutes=15,
        build_backend="jenkins",
        jenkins_job="shop-ci",
        memory_guard="warn",
    )
    html = page_of(logged_in, application)
    facts = dict(re.findall(r"<dt>(.*?)</dt><dd>(.*?)</dd>", html))
    assert facts["Default branch"] == "main"
    assert facts["Build backend"] == "Jenkins (job shop-ci)"
    assert facts["Image repository"] == "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop"
    assert facts["Phase timeout"] == "15 min"
    assert facts["Soak"] == "1 min 30 s"
    assert facts["Hold window after a failed build"] == "15 min"
    assert facts["Memory guard"] == "warns on the timeline, and deploys"
    assert facts["Git remote"] == str(application.git_remote_url)


def test_the_page_groups_services_by_phase_lowest_first(logged_in, application, cluster):
    workers = service(application, "workers", phase=2, process_type=ProcessType.WORKER)
    web = service(application, "web", phase=1, health_check_url="https://shop.example/health")
    ecs(workers, cluster, "shop-workers", container="worker")
    web_eu = ecs(web, cluster, "shop-web", container="nginx")
    old_box = legacy(web, "deploy-shop-web-legacy")
    service(application, "cron", phase=3, process_type=ProcessType.POLLER)

    html = page_of(logged_in, application)
    assert html.index('id="phase-1"') < html.index('id="phase-2"') < html.index('id="phase-3"')
    phase_1 = html[html.index('id="phase-1"') : html.index('id="phase-2"')]
    assert "web" in phase_1 and "shop-web" in phase_1 and "shop-workers" not in phase_1
    assert "https://shop.example/health" in phase_1
    phase_2 = html[html.index('id="phase-2"') : html.index('id="phase-3"')]
    assert "shop-workers" in phase_2 and "Worker" in phase_2 and "<code>worker</code>" in phase_2
    assert "No placements" in html[html.index('id="phase-3"') :]

    ecs_row = row_of(html, web_eu)
    assert "shop-web" in ecs_row and "prod-eu" in ecs_row and "eu-west-1" in ecs_row
    assert "<code>nginx</code>" in ecs_row
    legacy_row = row_of(html, old_box)
    assert "Legacy job" in legacy_row and "deploy-shop-web-legacy" in legacy_row
    # In no migration plan, a legacy job is not deployed (only ECS is), and the row says so.
    assert "Not deployed by Fat Controller yet" in legacy_row
    assert "the service is in no migration plan, so only ECS is" in legacy_row


def test_a_page_for_an_unknown_application_is_404(logged_in, application):
    assert logged_in.get("/applications/nope/").status_code == 404


# --- current revisions -------------------------------------------------------------------------


def test_a_placement_never_deployed_says_so(logged_in, application, cluster):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    cell = current_cell(page_of(logged_in, application), placement)
    assert "Not deployed by Fat Controller yet" in cell
    assert linked_deploys(cell) == []


def test_a_done_rollout_leaves_its_new_revision(logged_in, application, user, cluster):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    release = deploy(application, user, branch="feature/new-prices")
    rollout(release, placement, R.DONE, previous="shop-web:41", new="shop-web:42")
    cell = current_cell(page_of(logged_in, application), placement)
    assert '<code class="revision">shop-web:42</code>' in cell
    assert "shop-web:41" not in cell
    assert linked_deploys(cell) == [release.pk]
    assert "feature/new-prices" in cell


def test_a_rolled_back_rollout_leaves_the_revision_before(logged_in, application, user, cluster):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    bad = deploy(application, user, state=State.ROLLED_BACK)
    rollout(bad, placement, R.ROLLED_BACK, previous="shop-web:41", new="shop-web:42")
    cell = current_cell(page_of(logged_in, application), placement)
    assert '<code class="revision">shop-web:41</code>' in cell
    assert "shop-web:42" not in cell
    assert "rolled back" in cell
    assert linked_deploys(cell) == [bad.pk]


def test_a_failed_rollback_leaves_it_unknown(logged_in, application, user, cluster):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    older = deploy(application, user, branch="feature/older")
    rollout(older, placement, R.DONE, previous="shop-web:40", new="shop-web:41")
    broken = deploy(application, user, state=State.ROLLBACK_FAILED, branch="feature/broken")
    rollout(broken, placement, R.ROLLBACK_FAILED, previous="shop-web:41", new="shop-web:42")
    html = page_of(logged_in, application)
    cell = current_cell(html, placement)
    assert "Unknown" in cell and "see that deploy" in cell
    assert "shop-web:41" not in cell and "shop-web:42" not in cell
    assert linked_deploys(cell) == [broken.pk]
    assert "current-unknown" in row_of(html, placement)


def test_the_newest_finished_deploy_wins_whatever_order_the_rows_were_written(
    logged_in, application, user, cluster
):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    first = deploy(application, user, branch="feature/first")
    second = deploy(application, user, branch="feature/second")
    third = deploy(application, user, state=State.ROLLED_BACK, branch="feature/third")
    # Rows written out of order: the rollout's own id must not decide.
    rollout(third, placement, R.ROLLED_BACK, previous="shop-web:2", new="shop-web:3")
    rollout(second, placement, R.DONE, previous="shop-web:1", new="shop-web:2")
    rollout(first, placement, R.DONE, previous="shop-web:0", new="shop-web:1")
    cell = current_cell(page_of(logged_in, application), placement)
    assert '<code class="revision">shop-web:2</code>' in cell
    assert linked_deploys(cell) == [third.pk]


def test_deploys_in_flight_and_rollouts_never_started_do_not_count(
    logged_in, application, user, cluster
):
    placement = ecs(service(application, "web"), cluster, "shop-web")
    release = deploy(application, user, branch="feature/release")
    rollout(release, placement, R.DONE, previous="shop-web:6", new="shop-web:7")
    # A later deploy that failed before touching this service (its row still pending) ...
    untouched = deploy(application, user, state=State.FAILED, branch="feature/no-image")
    rollout(untouched, placement, R.PENDING)
    # ... and one rolling out right now: neither says what runs when it is over.
    running = deploy(application, user, state=State.DEPLOYING, branch="feature/running")
    rollout(running, placement, R.DONE, previous="shop-web:7", new="shop-web:8")
    html = page_of(logged_in, application)
    cell = current_cell(html, placement)
    assert '<code class="revision">shop-web:7</code>' in cell
    assert linked_deploys(cell) == [release.pk]
    # The one in flight is shown as the slot holder instead.
    holder = re.search(r'<span class="holder">(.*?)</span>\s*·', html, re.S).group(1)
    assert linked_deploys(holder) == [running.pk]


def test_each_placement_has_its_own_current_revision(logged_in, application, user, cluster):
    web = service(application, "web")
    eu = ecs(web, cluster, "shop-web")
    us = ecs(web, Cluster.objects.create(name="prod-us", region="us-east-1"), "shop-web-us")
    fresh = ecs(web, cluster, "shop-web-canary")
    release = deploy(application, user)
    rollout(release, eu, R.DONE, previous="shop-web:1", new="shop-web:2")
    rollout(release, us, R.DONE, previous="shop-web-us:8", new="shop-web-us:9")
    html = page_of(logged_in, application)
    assert "shop-web:2" in current_cell(html, eu)
    assert "shop-web-us:9" in current_cell(html, us)
    assert "Not deployed by Fat Controller yet" in current_cell(html, fresh)


@pytest.mark.parametrize(
    ("status", "kind", "revision"),
    [
        (R.DONE, applications.DEPLOYED, "web:2"),
        (R.ROLLED_BACK, applications.ROLLED_BACK, "web:1"),
        (R.ROLLBACK_FAILED, applications.UNKNOWN, ""),
        (R.FAILED, applications.UNKNOWN, ""),
        (R.UPDATING, applications.UNKNOWN, ""),
    ],
)
def test_current_revision_rules(application, user, cluster, status, kind, revision):
    placement = ecs(service(application, "web"), cluster, "web")
    row = rollout(deploy(application, user), placement, status, previous="web:1", new="web:2")
    current = applications.current_revision(row, placement)
    assert (current.kind, current.revision) == (kind, revision)
    assert current.deploy == row.deploy
    assert applications.current_revision(None, placement).kind == applications.NEVER
    old_box = legacy(placement.service, "job")
    assert applications.current_revision(None, old_box).kind == applications.NEVER
    old_box.legacy_version = "v41"
    recorded = applications.current_revision(None, old_box)
    assert (recorded.kind, recorded.revision) == (applications.RECORDED, "v41")


# --- what the page costs -----------------------------------------------------------------------


def fill(application, users, placements: int, deploys: int = 4) -> list[Placement]:
    """`placements` ECS placements over several services and phases, each touched by
    `deploys` finished deploys, the last of which rolled back."""
    clusters = [Cluster.objects.create(name=f"c-{application.pk}-{n}") for n in range(2)]
    made = []
    for n in range(placements):
        svc = service(application, f"svc-{len(made)}", phase=1 + n % 3)
        made.append(ecs(svc, clusters[n % 2], f"ecs-{n}"))
    for d in range(deploys):
        last = d == deploys - 1
        release = deploy(
            application,
            users[d % 2],
            state=State.ROLLED_BACK if last else State.SUCCEEDED,
            branch=f"feature/{d}",
        )
        for placement in made:
            rollout(
                release,
                placement,
                R.ROLLED_BACK if last else R.DONE,
                previous=f"{placement.ecs_service_name}:{d}",
                new=f"{placement.ecs_service_name}:{d + 1}",
            )
    return made


def count_queries(client, path) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries), html_of(response)


# Session, user, application, services, placements (with their latest rollout), rollouts,
# the slot's queue, the person's role grants (deploys/roles.py, once a request).
PAGE_MAX_QUERIES = 8


@pytest.mark.parametrize("deploys", [1, 4])
def test_the_page_costs_the_same_for_2_and_20_placements(
    logged_in, application, user, other_user, deploys
):
    other = Application.objects.create(slug="other", name="Other", git_remote_url="/x.git")
    small = fill(other, [user, other_user], 2, deploys)
    large = fill(application, [user, other_user], 20, deploys)
    few, small_html = count_queries(logged_in, "/applications/other/")
    many, large_html = count_queries(logged_in, "/applications/demo-shop/")
    assert few == many <= PAGE_MAX_QUERIES
    # What the queries fetched was shown: every placement's revision, the rolled back one.
    for html, placements in ((small_html, small), (large_html, large)):
        for placement in placements:
            revision = f"{placement.ecs_service_name}:{deploys - 1}"
            assert f'<code class="revision">{revision}</code>' in current_cell(html, placement)


def test_the_page_does_not_call_aws(logged_in, application, user, cluster, monkeypatch):
    from clusters.targets import ecs as ecs_module

    def refuse(*args, **kwargs):
        raise AssertionError("the page called AWS")

    monkeypatch.setattr(ecs_module, "EcsTarget", refuse)
    monkeypatch.setattr(ecs_module, "image_exists", refuse)
    monkeypatch.setattr(ecs_module, "client", refuse)
    placement = ecs(service(application, "web"), cluster, "shop-web")
    rollout(deploy(application, user), placement, R.DONE, previous="w:1", new="w:2")
    assert "w:2" in current_cell(page_of(logged_in, application), placement)


# --- lock and unlock ---------------------------------------------------------------------------


def test_locking_with_a_reason_locks_and_records_who(logged_in, application, user, other_user):
    waiting = deploy(application, other_user, state=State.QUEUED, branch="feature/waiting")
    response = logged_in.post(
        "/applications/demo-shop/lock/", {"reason": "  payment provider outage  "}, follow=True
    )
    assert response.redirect_chain == [("/applications/demo-shop/", 302)]
    application.refresh_from_db()
    assert application.locked
    assert application.locked_by == user
    assert application.lock_reason == "payment provider outage"
    assert application.locked_at is not None
    assert any("Locked demo-shop" in m for m in flashes(response))
    html = html_of(response)
    assert 'Locked by <span class="who">alice</span>' in html
    assert 'action="/applications/demo-shop/unlock/"' in html
    assert 'action="/applications/demo-shop/lock/"' not in html
    # The deploy it holds up hears why.
    note = DeployEvent.objects.filter(deploy=waiting).last()
    assert note.actor == user
    assert note.message == "alice locked demo-shop: payment provider outage"


@pytest.mark.parametrize(
    ("reason", "error"),
    [("", "A reason is required"), ("   \n ", "A reason is required"), ("x" * 501, "at most 500")],
)
def test_locking_without_a_good_reason_changes_nothing_and_says_why(
    logged_in, application, reason, error
):
    data = {"reason": reason}
    response = logged_in.post("/applications/demo-shop/lock/", data)
    assert response.status_code == 400
    application.refresh_from_db()
    assert not application.locked
    assert application.locked_by is None
    field_error = re.search(
        r'<p class="field-error" id="lock-reason-error"[^>]*>(.*?)</p>', html_of(response)
    )
    assert field_error and error in field_error.group(1)
    assert 'aria-describedby="lock-reason-error"' in html_of(response)


def test_locking_without_the_field_at_all_is_refused(logged_in, application):
    assert logged_in.post("/applications/demo-shop/lock/").status_code == 400
    application.refresh_from_db()
    assert not application.locked


def test_a_reason_of_500_characters_is_enough(logged_in, application):
    logged_in.post("/applications/demo-shop/lock/", {"reason": "y" * 500})
    application.refresh_from_db()
    assert application.locked and application.lock_reason == "y" * 500


def test_locking_a_locked_application_keeps_who_locked_it_and_why(
    logged_in, application, other_user
):
    slot.lock(application, actor=other_user, reason="the rollback of deploy #7 failed")
    response = logged_in.post("/applications/demo-shop/lock/", {"reason": "mine"}, follow=True)
    application.refresh_from_db()
    assert application.locked_by == other_user
    assert application.lock_reason == "the rollback of deploy #7 failed"
    assert any("already locked by bob" in m for m in flashes(response))


def test_unlocking_hands_the_slot_to_the_queued_deploy(
    logged_in, application, user, other_user, django_capture_on_commit_callbacks, sent_tasks
):
    slot.lock(application, actor=other_user, reason="release freeze")
    waiting = deploy(application, user, state=State.QUEUED, branch="feature/clean-merge")
    assert slot.advance(application.pk) is None  # locked: it waits

    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in.post("/applications/demo-shop/unlock/", follow=True)
    assert response.redirect_chain == [("/applications/demo-shop/", 302)]
    application.refresh_from_db()
    assert not application.locked
    assert application.locked_by is None and application.lock_reason == ""
    waiting.refresh_from_db()
    assert waiting.state == State.MERGING
    assert sent_tasks.sent == [("deploys.tasks.make_candidate", waiting.pk)]
    assert any("Unlocked demo-shop" in m for m in flashes(response))
    # Who unlocked it, and what the lock was, is on the deploy's timeline.
    messages = list(waiting.events.values_list("actor__username", "message"))
    assert ("alice", "alice unlocked demo-shop (it was locked by bob: release freeze)") in messages


def test_unlocking_an_open_application_says_there_is_nothing_to_do(logged_in, application):
    response = logged_in.post("/applications/demo-shop/unlock/", follow=True)
    assert any("is not locked" in m for m in flashes(response))
    application.refresh_from_db()
    assert not application.locked


@pytest.mark.parametrize("action", ["lock", "unlock"])
def test_lock_and_unlock_refuse_get(logged_in, application, action):
    assert logged_in.get(f"/applications/demo-shop/{action}/").status_code == 405


@pytest.mark.parametrize("action", ["lock", "unlock"])
def test_lock_and_unlock_of_an_unknown_application_are_404(logged_in, application, action):
    assert logged_in.post(f"/applications/nope/{action}/", {"reason": "x"}).status_code == 404


def test_the_buttons_are_post_forms_with_a_token_that_ask_first(logged_in, application, user):
    html = page_of(logged_in, application)
    lock_form = re.search(
        r'<form method="post" action="/applications/demo-shop/lock/"[^>]*>(.*?)</form>', html, re.S
    )
    assert lock_form and "csrfmiddlewaretoken" in lock_form.group(1)
    assert "confirm(" in lock_form.group(0)
    assert 'name="reason"' in lock_form.group(1) and 'maxlength="500"' in lock_form.group(1)
    slot.lock(application, actor=user, reason="freeze")
    html = page_of(logged_in, application)
    unlock_form = re.search(
        r'<form method="post" action="/applications/demo-shop/unlock/"[^>]*>(.*?)</form>',
        html,
        re.S,
    )
    assert unlock_form and "csrfmiddlewaretoken" in unlock_form.group(1)
    assert "confirm(" in unlock_form.group(0)


# --- login, CSRF, escaping, secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/applications/"),
        ("get", "/applications/demo-shop/"),
        ("post", "/applications/demo-shop/lock/"),
        ("post", "/applications/demo-shop/unlock/"),
    ],
)
def test_anonymous_users_are_sent_to_log_in_and_change_nothing(client, application, method, path):
    response = getattr(client, method)(path, {"reason": "x"} if method == "post" else None)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"
    application.refresh_from_db()
    assert not application.locked


def test_locking_without_the_csrf_token_is_refused(csrf_client, application):
    response = csrf_client.post("/applications/demo-shop/lock/", {"reason": "freeze"})
    assert response.status_code == 403
    application.refresh_from_db()
    assert not application.locked


def test_unlocking_without_the_csrf_token_is_refused(csrf_client, application, other_user):
    slot.lock(application, actor=other_user, reason="freeze")
    response = csrf_client.post("/applications/demo-shop/unlock/")
    assert response.status_code == 403
    application.refresh_from_db()
    assert application.locked


def test_the_lock_form_with_the_token_from_the_page_locks(csrf_client, application, user):
    html = page_of(csrf_client, application)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    response = csrf_client.post(
        "/applications/demo-shop/lock/", {"reason": "freeze", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    application.refresh_from_db()
    assert application.locked and application.locked_by == user


HOSTILE = '<script>alert("owned")</script>'


def test_a_hostile_lock_reason_is_escaped_everywhere(logged_in, application, user):
    logged_in.post("/applications/demo-shop/lock/", {"reason": HOSTILE})
    application.refresh_from_db()
    assert application.lock_reason == HOSTILE
    escaped = "&lt;script&gt;alert(&quot;owned&quot;)&lt;/script&gt;"
    for path in ("/applications/", "/applications/demo-shop/"):
        html = html_of(logged_in.get(path))
        assert "<script>alert" not in html
        assert escaped in html


def test_a_hostile_reason_typed_back_into_the_form_is_escaped(logged_in, application):
    response = logged_in.post("/applications/demo-shop/lock/", {"reason": "x" * 501 + HOSTILE})
    assert response.status_code == 400
    assert "<script>alert" not in html_of(response)
    assert "&lt;script&gt;" in html_of(response)


def test_hostile_names_are_escaped_on_the_page(logged_in, application, cluster):
    Application.objects.filter(pk=application.pk).update(name=HOSTILE, image_repository=HOSTILE)
    ecs(service(application, "web"), cluster, HOSTILE, container=HOSTILE)
    for path in ("/applications/", "/applications/demo-shop/"):
        html = html_of(logged_in.get(path))
        assert "<script>alert" not in html
        assert "&lt;script&gt;" in html


def test_credentials_in_the_git_remote_are_masked(logged_in, application):
    Application.objects.filter(pk=application.pk).update(
        git_remote_url="https://deployer:s3cr3t-t0ken@git.example.com/shop.git"
    )
    html = page_of(logged_in, application)
    assert "s3cr3t-t0ken" not in html
    assert "deployer" not in html
    assert "https://***@git.example.com/shop.git" in html


def test_credentials_in_a_health_check_url_are_masked(logged_in, application, cluster):
    web = service(application, "web", health_check_url="https://probe:hunter2@shop.example/health")
    ecs(web, cluster, "shop-web")
    html = page_of(logged_in, application)
    assert "hunter2" not in html
    assert "https://***@shop.example/health" in html


# --- the API -----------------------------------------------------------------------------------


def test_the_api_locks_with_a_reason(api, application, user):
    response = api.post("/api/applications/demo-shop/lock/", {"reason": "freeze"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["application"] == "demo-shop"
    assert body["locked"] is True
    assert body["lock_reason"] == "freeze"
    assert body["locked_by"] == "alice"
    assert body["locked_at"]
    application.refresh_from_db()
    assert application.locked and application.locked_by == user


@pytest.mark.parametrize(
    "body", [{}, {"reason": ""}, {"reason": "  "}, {"reason": 42}, {"reason": "z" * 501}]
)
def test_the_api_refuses_a_missing_or_bad_reason(api, application, body):
    response = api.post("/api/applications/demo-shop/lock/", body, format="json")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == ["reason"]
    assert errors["reason"] and all(isinstance(e, str) for e in errors["reason"])
    application.refresh_from_db()
    assert not application.locked


def test_the_api_does_not_overwrite_a_lock(api, application, other_user):
    slot.lock(application, actor=other_user, reason="theirs")
    response = api.post("/api/applications/demo-shop/lock/", {"reason": "mine"}, format="json")
    assert response.status_code == 409
    assert "already locked by bob" in response.json()["errors"]["state"][0]
    application.refresh_from_db()
    assert application.lock_reason == "theirs" and application.locked_by == other_user


def test_the_api_unlocks_and_the_queue_moves(
    api, application, user, other_user, django_capture_on_commit_callbacks, sent_tasks
):
    slot.lock(application, actor=other_user, reason="freeze")
    waiting = deploy(application, user, state=State.QUEUED, branch="feature/clean-merge")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/applications/demo-shop/unlock/", format="json")
    assert response.status_code == 200
    assert response.json() == {
        "application": "demo-shop",
        "locked": False,
        "lock_reason": "",
        "locked_by": None,
        "locked_at": None,
    }
    waiting.refresh_from_db()
    assert waiting.state == State.MERGING
    assert sent_tasks.sent == [("deploys.tasks.make_candidate", waiting.pk)]


def test_the_api_unlocking_an_open_application_is_harmless(api, application):
    response = api.post("/api/applications/demo-shop/unlock/", format="json")
    assert response.status_code == 200
    assert response.json()["locked"] is False


@pytest.mark.parametrize("action", ["lock", "unlock"])
def test_the_api_answers_404_for_an_unknown_application(api, application, action):
    response = api.post(f"/api/applications/nope/{action}/", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert "errors" in response.json()


@pytest.mark.parametrize("action", ["lock", "unlock"])
def test_the_api_needs_a_login(application, other_user, action):
    slot.lock(application, actor=other_user, reason="theirs") if action == "unlock" else None
    before = Application.objects.values("locked", "lock_reason").get(pk=application.pk)
    response = APIClient().post(
        f"/api/applications/demo-shop/{action}/", {"reason": "x"}, format="json"
    )
    assert response.status_code in (401, 403)
    assert "errors" in response.json()
    assert Application.objects.values("locked", "lock_reason").get(pk=application.pk) == before


def test_the_api_refuses_get_on_lock(api, application):
    assert api.get("/api/applications/demo-shop/lock/").status_code == 405


def test_the_lock_shows_its_age(logged_in, application, user):
    slot.lock(application, actor=user, reason="freeze")
    then = timezone.now() - timedelta(days=2)
    Application.objects.filter(pk=application.pk).update(locked_at=then)
    html = page_of(logged_in, application)
    assert f'datetime="{then.strftime("%Y-%m-%dT%H:%M:%S")}' in html
