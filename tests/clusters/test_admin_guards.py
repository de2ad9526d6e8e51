"""The admin cannot change what a migration plan or a running deploy holds: a placement's kind
and where it runs are read-only and it cannot be deleted, a service's migration phase and a
phase's state are read-only, moves and legacy runs are records. Through the test client, as
a staff user."""

import re

import pytest

from appconfig.apply import apply_app_config
from appconfig.parse import parse_app_config
from clusters.migration import move
from clusters.models import LegacyRun, MigrationMove, MigrationPhase, Placement, Service
from deploys.models import Deploy, ServiceRollout
from tests.appconfig.files import with_plan

FIXED = "Read-only while"
WHERE = "config file (docs/app-config.md), or move its phase on the migration page"


@pytest.fixture
def staff(client, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    return client


def load(text):
    apply_app_config(parse_app_config(text))


def change_url(model, pk):
    return f"/admin/clusters/{model}/{pk}/change/"


def delete_url(model, pk):
    return f"/admin/clusters/{model}/{pk}/delete/"


def has_input(html, name):
    return re.search(rf'<(select|input|textarea)[^>]* name="{re.escape(name)}"', html) is not None


def placement_form(placement, **changes):
    data = {
        "service": placement.service_id,
        "kind": placement.kind,
        "cluster": placement.cluster_id or "",
        "ecs_service_name": placement.ecs_service_name,
        "container_name": placement.container_name,
        "legacy_job": placement.legacy_job,
        "legacy_version": placement.legacy_version,
    }
    data.update(changes)
    return data


def placement_row(placement):
    placement.refresh_from_db()
    return (
        placement.service_id,
        placement.kind,
        placement.cluster_id,
        placement.ecs_service_name,
        placement.legacy_job,
    )


@pytest.mark.django_db
def test_a_placement_in_no_plan_and_no_deploy_is_editable(application, staff):
    load(with_plan(lambda d: d.pop("migration")))
    placement = Placement.objects.get(legacy_job="old-worker")

    html = staff.get(change_url("placement", placement.pk)).content.decode()

    assert has_input(html, "kind") and has_input(html, "legacy_job")
    assert FIXED not in html
    answer = staff.post(
        change_url("placement", placement.pk), placement_form(placement, legacy_job="renamed")
    )
    assert answer.status_code == 302
    assert placement_row(placement)[-1] == "renamed"


@pytest.mark.django_db
def test_a_placement_in_a_plan_shows_its_kind_and_target_read_only(application, staff):
    load(with_plan())
    placement = Placement.objects.get(legacy_job="old-worker")

    html = staff.get(change_url("placement", placement.pk)).content.decode()

    for field in ("kind", "cluster", "ecs_service_name", "legacy_job", "service"):
        assert not has_input(html, field), field
    assert has_input(html, "legacy_version") and has_input(html, "container_name")
    assert (
        f"{FIXED} its service &#x27;worker&#x27; is in phase 1 (workers) of the migration plan, "
        "which is planned. To change what it is or where it runs, change it in the "
        f"application&#x27;s {WHERE} (/applications/demo-shop/migration/)."
    ) in html
    assert "Delete</a>" not in html  # no delete link for what cannot be deleted


@pytest.mark.django_db
def test_a_post_that_changes_a_planned_placements_kind_changes_nothing_of_it(application, staff):
    load(with_plan())
    placement = Placement.objects.get(legacy_job="old-worker")
    before = placement_row(placement)
    web = Service.objects.get(name="web")

    answer = staff.post(
        change_url("placement", placement.pk),
        placement_form(
            placement,
            kind="ecs",
            cluster=Placement.objects.get(ecs_service_name="demo-shop-web").cluster_id,
            ecs_service_name="sneaky",
            legacy_job="",
            service=web.pk,
            legacy_version="v42",
        ),
    )

    assert answer.status_code == 302
    assert placement_row(placement) == before
    assert placement.legacy_version == "v42"  # what the plan does not hold is still editable


@pytest.mark.django_db
def test_a_placement_a_running_deploy_uses_is_read_only_and_says_which(application, staff, user):
    load(with_plan(lambda d: d.pop("migration")))
    placement = Placement.objects.get(ecs_service_name="demo-shop-web")
    deploy = Deploy.objects.create(
        application=application, branch="feature/x", requester=user, state="deploying"
    )
    ServiceRollout.objects.create(deploy=deploy, placement=placement, phase=2)
    before = placement_row(placement)

    html = staff.get(change_url("placement", placement.pk)).content.decode()
    assert f"{FIXED} deploy #{deploy.id} is rolling it out." in html
    assert not has_input(html, "kind")

    staff.post(change_url("placement", placement.pk), placement_form(placement, kind="legacy"))
    assert placement_row(placement) == before

    deploy.state = "succeeded"
    deploy.save()
    assert has_input(staff.get(change_url("placement", placement.pk)).content.decode(), "kind")


@pytest.mark.django_db
def test_deleting_a_placement_in_use_is_refused_with_why(application, staff):
    load(with_plan())
    placement = Placement.objects.get(legacy_job="old-worker")

    answer = staff.post(delete_url("placement", placement.pk), {"post": "yes"}, follow=True)

    assert Placement.objects.filter(pk=placement.pk).exists()
    assert answer.redirect_chain == [(change_url("placement", placement.pk), 302)]
    html = answer.content.decode()
    assert (
        "Placement demo-shop/worker on old-worker cannot be deleted while its service "
        "&#x27;worker&#x27; is in phase 1 (workers) of the migration plan, which is planned: "
        "change it in the application&#x27;s config file"
    ) in html

    bulk = staff.post(
        "/admin/clusters/placement/",
        {"action": "delete_selected", "_selected_action": [placement.pk], "post": "yes"},
    )
    assert Placement.objects.filter(pk=placement.pk).exists()
    assert "in use while its service &#x27;worker&#x27; is in phase 1" in bulk.content.decode()


@pytest.mark.django_db
def test_deleting_a_service_in_a_plan_is_refused(application, staff):
    load(with_plan())
    service = Service.objects.get(name="worker")

    answer = staff.post(delete_url("service", service.pk), {"post": "yes"}, follow=True)

    assert Service.objects.filter(pk=service.pk).exists()
    assert Placement.objects.filter(service=service).count() == 2
    assert "Service demo-shop/worker cannot be deleted while" in answer.content.decode()

    bulk = staff.post(
        "/admin/clusters/service/",
        {"action": "delete_selected", "_selected_action": [service.pk], "post": "yes"},
    )
    assert Service.objects.filter(pk=service.pk).exists()
    assert "Service demo-shop/worker: in use while" in bulk.content.decode()


@pytest.mark.django_db
def test_a_services_migration_phase_and_placements_are_read_only(application, staff):
    load(with_plan())
    service = Service.objects.get(name="worker")
    webs = MigrationPhase.objects.get(name="webs")

    html = staff.get(change_url("service", service.pk)).content.decode()

    assert not has_input(html, "migration_phase")
    assert "Set by the migration section of the application&#x27;s config file" in html
    assert "Its placements: Read-only while its service &#x27;worker&#x27; is in phase 1" in html
    assert not has_input(html, "placements-0-kind")
    assert has_input(html, "placements-0-container_name")
    assert not has_input(html, "placements-0-DELETE")

    placements = list(service.placements.order_by("id"))
    form = {
        "application": application.pk,
        "name": "worker",
        "process_type": "worker",
        "phase": 1,
        "health_check_url": "",
        "migration_phase": webs.pk,
        "placements-TOTAL_FORMS": 2,
        "placements-INITIAL_FORMS": 2,
        "placements-MIN_NUM_FORMS": 0,
        "placements-MAX_NUM_FORMS": 1000,
    }
    for n, placement in enumerate(placements):
        form |= {
            f"placements-{n}-id": placement.pk,
            f"placements-{n}-service": service.pk,
            f"placements-{n}-kind": "ecs" if placement.kind == "legacy" else "legacy",
            f"placements-{n}-legacy_job": "sneaky",
            f"placements-{n}-container_name": placement.container_name,
            f"placements-{n}-DELETE": "on",
        }
    before = [placement_row(p) for p in placements]

    answer = staff.post(change_url("service", service.pk), form)

    assert answer.status_code == 302, answer.content.decode()[:3000]
    service.refresh_from_db()
    assert service.migration_phase.name == "workers"
    assert [placement_row(p) for p in placements] == before


@pytest.mark.django_db
def test_names_in_the_reasons_are_escaped(application, staff):
    load(with_plan(lambda d: d["migration"]["phases"][0].update(name="<b>workers</b>")))
    placement = Placement.objects.get(legacy_job="old-worker")
    html = staff.get(change_url("placement", placement.pk)).content.decode()
    assert "phase 1 (&lt;b&gt;workers&lt;/b&gt;)" in html
    assert "<b>workers</b>" not in html


@pytest.mark.django_db
def test_a_phases_state_is_read_only(application, staff, user):
    load(with_plan())
    phase = MigrationPhase.objects.get(name="workers")
    move(phase, "dual_running", actor=user, reason="admin test")

    html = staff.get(change_url("migrationphase", phase.pk)).content.decode()
    assert not has_input(html, "state")
    assert not has_input(html, "position")  # a started phase keeps its place
    assert "Moved only on the migration page (/applications/demo-shop/migration/)" in html

    staff.post(
        change_url("migrationphase", phase.pk),
        {"position": 2, "name": "renamed", "state": "done", "plan": phase.plan_id},
    )
    phase.refresh_from_db()
    assert (phase.position, phase.name, phase.state) == (1, "workers", "dual_running")
    staff.post(delete_url("migrationphase", phase.pk), {"post": "yes"})
    assert MigrationPhase.objects.filter(pk=phase.pk).exists()

    assert staff.get("/admin/clusters/migrationplan/add/").status_code == 403  # the file's
    plan_html = staff.get(change_url("migrationplan", phase.plan_id)).content.decode()
    assert not has_input(plan_html, "phases-0-state")
    assert "dual running" in plan_html.lower()


@pytest.mark.django_db
def test_moves_and_legacy_runs_are_records(application, staff, user):
    load(with_plan())
    record = move(
        MigrationPhase.objects.get(name="workers"), "dual_running", actor=user, reason="records"
    )
    run = LegacyRun.objects.create(
        placement=Placement.objects.get(legacy_job="old-worker"),
        purpose="deploy",
        request="req-1",
        version="v42",
        result="SUCCESS",
    )
    for model, obj in (("migrationmove", record), ("legacyrun", run)):
        listing = staff.get(f"/admin/clusters/{model}/")
        assert listing.status_code == 200
        assert staff.get(f"/admin/clusters/{model}/add/").status_code == 403
        html = staff.get(change_url(model, obj.pk)).content.decode()
        assert 'name="_save"' not in html
        staff.post(change_url(model, obj.pk), {"reason": "rewritten", "version": "v1"})
        staff.post(delete_url(model, obj.pk), {"post": "yes"})
    record.refresh_from_db()
    run.refresh_from_db()
    assert (record.reason, run.version) == ("records", "v42")
    assert MigrationMove.objects.filter(pk=record.pk).exists()
