"""What the dashboard and its live fragment cost: the same number of queries at 1 and at 50
applications, cold cache and warm, and a page at 50 applications under 100 KiB; and the
compact rows still say the right thing for applications set up differently."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from clusters.models import (
    Cluster,
    ClusterReport,
    LegacyRun,
    LegacyRunPurpose,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Placement,
    PlacementKind,
    ProcessType,
    ReportKind,
    Service,
)
from deploys import dashboard, slot
from deploys.models import Application, Deploy, ServiceRollout
from deploys.states import Mode, State
from tests.conftest import clear_caches
from tests.pages import html_of, linked_deploys

PAGES = ("/", "/live/dashboard/")
FINISHED = (State.MERGED, State.SUCCEEDED, State.FAILED, State.CANCELLED)
MAX_PAGE_BYTES = 100 * 1024


def a_busy_application(n: int, users, cluster, *, migrating: bool = True) -> Application:
    """An application as the dashboard sees it at its busiest: 6 finished deploys, a holder
    and 3 waiting; `migrating`: a service dual running (an ECS placement on the cluster, with
    its open report, and a legacy one), the holder half way through its rollout (one side
    out, the legacy job's run under way)."""
    app = Application.objects.create(
        slug=f"app-{n:02d}", name=f"App {n}", git_remote_url="/nowhere.git", default_branch="main"
    )
    now = timezone.now()
    for i in range(6):
        start = now - timedelta(hours=2, minutes=20 * i)
        Deploy.objects.create(
            application=app,
            branch=f"feature/done-{i}",
            requester=users[i % len(users)],
            mode=Mode.DEPLOY,
            state=FINISHED[i % len(FINISHED)],
            started_at=start,
            finished_at=start + timedelta(minutes=10 + i),
        )
    holder = Deploy.objects.create(
        application=app,
        branch="feature/now",
        requester=users[n % len(users)],
        mode=Mode.DEPLOY,
        state=State.DEPLOYING,
        started_at=now - timedelta(minutes=3),
    )
    for i in range(3):
        Deploy.objects.create(
            application=app, branch=f"feature/next-{i}", requester=users[i % len(users)]
        )
    if migrating:
        dual_running(app, holder, n, cluster)
    return app


def dual_running(app, holder, n: int, cluster) -> None:
    plan = MigrationPlan.objects.create(application=app, proof_deploys=1, proof_hours=0)
    phase = MigrationPhase.objects.create(
        plan=plan, position=1, name="workers", state=MigrationState.DUAL_RUNNING
    )
    worker = Service.objects.create(
        application=app,
        name="worker",
        process_type=ProcessType.WORKER,
        phase=1,
        migration_phase=phase,
    )
    ecs = Placement.objects.create(
        service=worker, cluster=cluster, ecs_service_name=f"w-{n}", container_name="app"
    )
    legacy = Placement.objects.create(
        service=worker, kind=PlacementKind.LEGACY, legacy_job=f"deploy-{n}", legacy_version="v1"
    )
    ServiceRollout.objects.create(deploy=holder, placement=ecs, phase=1, status="done")
    run = LegacyRun.objects.create(
        placement=legacy, purpose=LegacyRunPurpose.DEPLOY, request=f"r{n}", build_number=n
    )
    ServiceRollout.objects.create(
        deploy=holder, placement=legacy, phase=1, status="updating", start_handle=str(run.pk)
    )


@pytest.fixture
def busy(db, user, other_user):
    """make(count): `count` busy applications, on one cluster with an open report."""
    cluster = Cluster.objects.create(name="prod")
    ClusterReport.objects.create(
        cluster=cluster, kind=ReportKind.AGENT_DISCONNECTED, subject="i-1", message="gone"
    )
    made = []

    def make(count: int, *, migrating: bool = True) -> list[Application]:
        for _ in range(count):
            made.append(
                a_busy_application(len(made), [user, other_user], cluster, migrating=migrating)
            )
        return made

    return make


def queries_and_bytes(client, path) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return len(queries), len(response.content)


def cold_and_warm(client, path) -> tuple[int, int]:
    """Nothing kept, then what was kept by the first (the rows are kept for their minute)."""
    clear_caches()
    cold, _ = queries_and_bytes(client, path)
    warm, _ = queries_and_bytes(client, path)
    return cold, warm


@pytest.mark.parametrize("path", PAGES)
def test_the_same_queries_at_1_10_and_50_applications(logged_in, busy, path):
    busy(1)
    at_one = cold_and_warm(logged_in, path)
    busy(9)
    at_ten = cold_and_warm(logged_in, path)
    busy(40)
    assert Application.objects.count() == 50
    at_fifty = cold_and_warm(logged_in, path)
    print(f"{path}: (cold, warm) queries at 1: {at_one}, at 10: {at_ten}, at 50: {at_fifty}")
    assert at_ten == at_one
    assert at_fifty == at_one


def test_the_open_deploys_are_not_sorted_by_the_database_but_still_in_queue_order(busy):
    # Asked to sort, SQLite walked every deploy of the application by its (application, -id)
    # index (31 ms at 100,000 of one application) instead of the few open ones.
    (app,) = busy(1)
    with CaptureQueriesContext(connection) as queries:
        (entry,) = dashboard.board(Application.objects.filter(pk=app.pk))
    (open_deploys,) = [
        q["sql"] for q in queries
        if '"deploys_deploy"."state" IN' in q["sql"] and 'JOIN "auth_user"' in q["sql"]
    ]  # fmt: skip
    assert "ORDER BY" not in open_deploys
    waiting = [deploy.pk for deploy, _ in entry.waiting]
    assert len(waiting) == 3
    assert waiting == sorted(waiting)
    assert entry.holder is not None


def test_the_page_at_50_applications_is_under_100_kib(logged_in, busy):
    busy(50)
    _, size = queries_and_bytes(logged_in, "/")
    _, live = queries_and_bytes(logged_in, "/live/dashboard/")
    print(f"at 50 applications: the page {size / 1024:.1f} KiB, the fragment {live / 1024:.1f} KiB")
    assert size < MAX_PAGE_BYTES
    assert live < size


# --- what the rows say -----------------------------------------------------------------------


def row(html: str, slug: str) -> str:
    match = re.search(rf'<div data-live-id="app-{slug}-row">(.*?)</div>', html, re.S)
    assert match, f"no row for {slug}"
    return match.group(1)


def line(row_html: str, label: str) -> str:
    match = re.search(rf"<b>{label}</b>(.*?)</p>", row_html, re.S)
    assert match, f"no {label} line in {row_html}"
    return match.group(1)


def new_app(slug: str) -> Application:
    return Application.objects.create(slug=slug, name=slug, git_remote_url="/nowhere.git")


def deploy(app, user, state, branch, **fields) -> Deploy:
    return Deploy.objects.create(
        application=app, branch=branch, requester=user, state=state, **fields
    )


@pytest.mark.parametrize("path", PAGES)
def test_each_row_shows_its_own_lock_holder_queue_and_last_outcome(
    logged_in, user, other_user, path
):
    now = timezone.now()
    busy_app, locked, quiet, failing = (new_app(s) for s in ("busy", "locked", "quiet", "failing"))
    deploy(busy_app, user, State.MERGED, "feature/old", finished_at=now - timedelta(hours=2))
    merged = deploy(busy_app, other_user, State.MERGED, "feature/done", finished_at=now)
    holder = deploy(busy_app, other_user, State.BUILDING, "feature/now", started_at=now)
    first = deploy(busy_app, user, State.QUEUED, "feature/first")
    deploy(busy_app, other_user, State.QUEUED, "feature/second")

    waiting = deploy(locked, user, State.QUEUED, "feature/frozen")
    slot.lock(locked, actor=other_user, reason="release freeze")

    deploy(failing, user, State.MERGED, "feature/fine", finished_at=now - timedelta(hours=1))
    failed = deploy(failing, user, State.FAILED, "feature/broken", finished_at=now)
    # Queued after the failure, still waiting: the newest deploy is not the last finished.
    deploy(failing, other_user, State.QUEUED, "feature/later")

    html = html_of(logged_in.get(path))

    busy_row = row(html, "busy")
    assert "Locked" not in busy_row
    assert linked_deploys(line(busy_row, "Slot")) == [holder.pk]
    assert "Building" in line(busy_row, "Slot")
    queue = line(busy_row, "Queue")
    assert "2 waiting" in queue
    assert linked_deploys(queue)[-1] == first.pk  # the next in line, not the last
    assert linked_deploys(line(busy_row, "Last")) == [merged.pk]
    assert "Merged" in line(busy_row, "Last")

    locked_row = row(html, "locked")
    assert "Locked by bob: release freeze" in locked_row
    assert "Free." in line(locked_row, "Slot")
    assert "1 waiting" in line(locked_row, "Queue")
    assert linked_deploys(line(locked_row, "Queue"))[-1] == waiting.pk
    assert "waits for the unlock" in line(locked_row, "Queue")
    assert "None yet." in line(locked_row, "Last")

    quiet_row = row(html, "quiet")
    assert "Locked" not in quiet_row
    assert "Free." in line(quiet_row, "Slot")
    assert "Nobody is waiting." in line(quiet_row, "Queue")
    assert "None yet." in line(quiet_row, "Last")

    failing_row = row(html, "failing")
    assert linked_deploys(line(failing_row, "Last")) == [failed.pk]
    assert "Failed" in line(failing_row, "Last")
    assert "1 waiting" in line(failing_row, "Queue")


def test_with_many_applications_each_row_links_to_its_queue_form(logged_in, user):
    apps = [new_app(f"app-{n:02d}") for n in range(11)]
    queued = deploy(apps[3], user, State.QUEUED, "feature/waits")
    html = html_of(logged_in.get("/"))
    assert 'class="queue-form"' not in html
    assert html.count('href="/applications/app-03/#queue"') == 2  # the queue and the link
    page = html_of(logged_in.get("/applications/app-03/"))
    queue = page[page.index('id="queue"') :]
    assert linked_deploys(queue[: queue.index("</ol>")]) == [queued.pk]
    assert page.count('class="queue-form"') == 1
    assert 'name="application" value="app-03"' in page
