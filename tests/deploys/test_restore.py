"""A restore (a person putting back an earlier release), by its own name: mode "restore", the
restore path in the API with its old name "rollback" kept, and the data migration that
renamed existing rows. The rollout itself is tested in test_rollout.py."""

import importlib

import pytest
from django.apps import apps
from django.urls import resolve

from clusters.models import Cluster, Placement, Service
from deploys import api as api_views
from deploys import views
from deploys.models import Deploy, RolloutStatus, ServiceRollout
from deploys.states import Mode, State


@pytest.fixture
def release(application, user) -> Deploy:
    service = Service.objects.create(application=application, name="web", phase=1)
    cluster = Cluster.objects.create(name="prod-eu", region="eu-west-1")
    placement = Placement.objects.create(
        service=service, cluster=cluster, ecs_service_name="shop-web"
    )
    release = Deploy.objects.create(
        application=application, branch="feature/x", requester=user, state=State.SUCCEEDED
    )
    ServiceRollout.objects.create(
        deploy=release,
        placement=placement,
        phase=1,
        status=RolloutStatus.DONE,
        revision_made="shop-web:2",
    )
    return release


def test_the_old_paths_are_the_restore_views():
    # RollbackView is RestoreView described as its deprecated old name in the schema.
    assert issubclass(resolve("/api/deploys/7/rollback/").func.view_class, api_views.RestoreView)
    assert resolve("/api/deploys/7/restore/").func.view_class is api_views.RestoreView
    assert resolve("/deploys/7/rollback/").func is views.restore
    assert resolve("/deploys/7/restore/").func is views.restore


@pytest.mark.parametrize("path", ["restore", "rollback"])
def test_the_api_queues_a_restore_by_either_path(api, release, path):
    response = api.post(f"/api/deploys/{release.pk}/{path}/")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["mode"], body["restore_of"], body["state"]) == ("restore", release.pk, "queued")
    assert body["rollback_of"] == release.pk  # the old name, kept for existing clients
    assert body["branch"] == f"restore-{release.pk}"
    assert [r["new_task_definition"] for r in body["rollouts"]] == ["shop-web:2"]


def test_the_migration_renames_the_mode_both_ways(application, user):
    migration = importlib.import_module("deploys.migrations.0009_restore_mode")
    old = Deploy.objects.create(application=application, branch="a", requester=user)
    Deploy.objects.filter(pk=old.pk).update(mode="rollback")  # as a row written before it
    other = Deploy.objects.create(application=application, branch="b", requester=user)

    migration.rename_mode("rollback", "restore")(apps, None)
    assert Deploy.objects.get(pk=old.pk).mode == Mode.RESTORE
    assert Deploy.objects.get(pk=other.pk).mode == Mode.DEPLOY

    migration.rename_mode("restore", "rollback")(apps, None)
    assert Deploy.objects.get(pk=old.pk).mode == "rollback"
    assert Deploy.objects.get(pk=other.pk).mode == Mode.DEPLOY
