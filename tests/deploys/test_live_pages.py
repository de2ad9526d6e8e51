"""The live parts of the pages: progress steps, start estimates, the polled fragments, buttons
that answer in JSON, branch suggestions, the diff summary, and escaping in all of them."""

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from builds.models import Build, BuildStatus
from clusters.models import Cluster, Placement, ProcessType, Service
from deploys import dashboard
from deploys.models import Application, Deploy, DeployEvent, ServiceRollout
from deploys.states import FINAL_STATES, Mode, State


def make(application, user, state, *, branch="feature/x", mode=Mode.DEPLOY, **fields):
    return Deploy.objects.create(
        application=application, branch=branch, mode=mode, requester=user, state=state, **fields
    )


def finished(application, user, minutes: int, n: int) -> Deploy:
    start = timezone.now() - timedelta(hours=5, minutes=n * 30)
    return make(
        application,
        user,
        State.MERGED,
        branch=f"feature/done-{n}",
        started_at=start,
        finished_at=start + timedelta(minutes=minutes),
    )


@pytest.fixture
def two_phases(application):
    cluster = Cluster.objects.create(name="demo")
    for name, phase in (("worker", 1), ("web", 2)):
        service = Service.objects.create(
            application=application, name=name, process_type=ProcessType.WORKER, phase=phase
        )
        Placement.objects.create(
            service=service, cluster=cluster, ecs_service_name=name, container_name="app"
        )
    return application


def labels_and_statuses(steps):
    return [(step.label, step.status) for step in steps]


def test_the_steps_of_a_deploy_follow_its_state(application, user, two_phases):
    deploy = make(application, user, State.BUILDING)
    assert labels_and_statuses(dashboard.steps(deploy, [1, 2], [])) == [
        ("Merge", "done"),
        ("Build", "current"),
        ("Phase 1", "todo"),
        ("Phase 2", "todo"),
        ("Soak", "todo"),
        ("Merge to main", "todo"),
    ]
    deploy.state = State.BUILD_FAILED
    assert dashboard.steps(deploy, [1, 2], [])[1].status == "failed"


def test_the_current_phase_is_the_lowest_not_out(application, user, two_phases):
    deploy = make(application, user, State.DEPLOYING)
    placements = list(Placement.objects.order_by("service__phase"))
    rollouts = [
        ServiceRollout.objects.create(
            deploy=deploy, placement=placements[0], phase=1, status="done"
        ),
        ServiceRollout.objects.create(
            deploy=deploy, placement=placements[1], phase=2, status="updating"
        ),
    ]
    statuses = labels_and_statuses(dashboard.steps(deploy, [1, 2], rollouts))
    assert statuses[2:5] == [("Phase 1", "done"), ("Phase 2", "current"), ("Soak", "todo")]


def test_merge_only_and_restore_deploys_have_their_own_steps(application, user, two_phases):
    merge_only = make(application, user, State.MERGING_TO_DEFAULT, mode=Mode.MERGE_ONLY)
    assert labels_and_statuses(dashboard.steps(merge_only, [1, 2], [])) == [
        ("Merge", "done"),
        ("Build", "done"),
        ("Merge to main", "current"),
    ]
    restore = make(application, user, State.SUCCEEDED, mode=Mode.RESTORE, branch="restore-1")
    assert labels_and_statuses(dashboard.steps(restore, [1, 2], [])) == [
        ("Phase 1", "done"),
        ("Phase 2", "done"),
        ("Soak", "done"),
    ]


def test_the_queue_gets_start_estimates_from_recent_durations(application, user, other_user):
    for n, minutes in enumerate((10, 20, 30)):
        finished(application, user, minutes, n)
    holder = make(
        application,
        user,
        State.BUILDING,
        branch="feature/now",
        started_at=timezone.now() - timedelta(minutes=5),
    )
    first = make(application, other_user, State.QUEUED, branch="feature/next")
    second = make(application, user, State.QUEUED, branch="feature/later")

    [entry] = dashboard.board()

    assert entry.holder == holder
    assert entry.typical_duration == timedelta(minutes=20)  # the median
    (d1, eta1), (d2, eta2) = entry.waiting
    assert (d1, d2) == (first, second)
    # The holder has about 15 minutes left, then one typical deploy each.
    expected_first = holder.started_at + timedelta(minutes=20)
    assert abs((eta1 - expected_first).total_seconds()) < 1
    assert abs((eta2 - eta1) - timedelta(minutes=20)) < timedelta(seconds=1)


def test_no_history_or_a_locked_queue_gives_no_estimate(application, user):
    make(application, user, State.QUEUED)
    [entry] = dashboard.board()
    assert entry.waiting[0][1] is None

    finished(application, user, 10, 1)
    Application.objects.filter(pk=application.pk).update(locked=True, lock_reason="freeze")
    [entry] = dashboard.board()
    assert entry.waiting[0][1] is None


def test_a_25_hour_deploy_reads_the_same_on_the_dashboard_and_the_history(
    logged_in, application, user
):
    start = timezone.now() - timedelta(hours=26)
    finished_at = start + timedelta(hours=25, minutes=3)
    make(application, user, State.MERGED, started_at=start, finished_at=finished_at)

    dashboard_html = logged_in.get("/").content.decode()
    history_html = logged_in.get("/history/").content.decode()

    assert "took 1 d 1 h" in dashboard_html
    assert re.search(r'<td data-label="Duration">1 d 1 h</td>', history_html)


def test_the_dashboard_shows_progress_estimates_and_who_took_how_long(
    logged_in, application, user, other_user
):
    finished(application, other_user, 12, 1)
    make(application, user, State.BUILDING, branch="feature/now", started_at=timezone.now())
    make(application, other_user, State.QUEUED, branch="feature/next")

    html = logged_in.get("/").content.decode()

    # Where the holder is, in a line: the whole bar is on its deploy page.
    assert '<span class="step step-current">Build, step 2 of 3</span>' in html
    assert re.search(r'class="eta">starts about <time datetime="[^"]+" data-format="time">', html)
    assert "took 12 min" in html and "12 min 0 s" not in html
    assert "usually takes 12 min" in html
    assert 'data-mine="1"' in html  # alice's own deploy, for the page to tell her


def test_the_dashboard_fragment_carries_the_live_parts_but_not_the_form(
    logged_in, application, user
):
    make(application, user, State.QUEUED, branch="feature/<script>alert(1)</script>")

    response = logged_in.get("/live/dashboard/")

    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-live-id="app-demo-shop-row"' in html
    assert "queue-form" not in html  # what someone is typing is never replaced
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_the_deploy_fragment_carries_head_timeline_rollout_and_builds(logged_in, application, user):
    deploy = make(
        application,
        user,
        State.BUILD_FAILED,
        commits=[{"sha": "a" * 40, "author": "Eve <eve@x>", "subject": "<script>x()</script>"}],
    )
    DeployEvent.objects.create(deploy=deploy, from_state="building", to_state="build_failed")
    Build.objects.create(deploy=deploy, attempt=1, status=BuildStatus.FAILED, log="red\n")

    html = logged_in.get(f"/deploys/{deploy.pk}/live/").content.decode()

    for part in ("deploy-head", "deploy-commits", "deploy-rollout", "deploy-timeline"):
        assert f'data-live-id="{part}"' in html
    assert 'id="deploy-state" data-state="build_failed"' in html
    assert 'class="inline js-action"' in html and "Retry build" in html
    assert 'section class="build" id="build-1"' in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html and "<script>x()" not in html
    assert "Eve &lt;eve@x&gt;" in html


def test_a_finished_deploy_page_does_not_poll(logged_in, application, user):
    deploy = make(application, user, State.MERGED, mode=Mode.MERGE_ONLY)
    html = logged_in.get(f"/deploys/{deploy.pk}/").content.decode()
    assert 'data-live-final="1"' in html
    assert "<noscript>" not in html


def test_a_button_pressed_by_the_script_answers_json(
    logged_in, application, user, django_capture_on_commit_callbacks
):
    deploy = make(application, user, State.BUILD_FAILED)
    headers = {"X-Requested-With": "fetch"}

    with django_capture_on_commit_callbacks(execute=True):
        answer = logged_in.post(f"/deploys/{deploy.pk}/abandon/", headers=headers)
    again = logged_in.post(f"/deploys/{deploy.pk}/abandon/", headers=headers)
    wrong = logged_in.post(f"/deploys/{deploy.pk}/retry-build/", headers=headers)

    assert answer.status_code == 200
    assert answer.json() == {"level": "success", "message": "Abandoned: the slot is handed on."}
    assert again.json()["level"] == "info"
    assert wrong.status_code == 409 and wrong.json()["level"] == "error"
    assert Deploy.objects.get(pk=deploy.pk).state == State.ABANDONED


def test_branch_suggestions_come_from_the_remote_without_the_default_branch(logged_in, application):
    answer = logged_in.get("/applications/demo-shop/branches/").json()
    assert "feature/clean-merge" in answer["branches"]
    assert "main" not in answer["branches"]
    assert logged_in.get("/applications/nope/branches/").status_code == 404


def test_branch_suggestions_say_when_the_remote_cannot_be_read(logged_in, application, settings):
    Application.objects.filter(pk=application.pk).update(git_remote_url="/no/such/remote.git")
    answer = logged_in.get("/applications/demo-shop/branches/")
    assert answer.status_code == 502
    assert answer.json()["branches"] == [] and answer.json()["error"]


def test_the_pages_link_to_each_other(logged_in, application):
    html = logged_in.get("/").content.decode()
    for target in ('href="/history/"', 'href="/applications/"', 'href="/applications/demo-shop/"'):
        assert target in html


def test_the_pages_tell_live_js_the_final_states_from_the_one_table(logged_in):
    html = logged_in.get("/").content.decode()
    told = html.split('data-final-states="', 1)[1].split('"', 1)[0]

    assert set(told.split(" ")) == {str(state) for state in FINAL_STATES}
    script = (Path(__file__).resolve().parents[2] / "static/js/live.js").read_text()
    assert '"succeeded"' not in script  # no list of its own to drift
