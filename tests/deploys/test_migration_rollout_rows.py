"""Migration 0010 carries a rollout row's ECS-shaped columns over to the neutral ones."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [
    ("deploys", "0009_restore_mode"),
    ("clusters", "0002_rollouts"),
    ("builds", "0002_build_backends"),
]
AFTER = ("deploys", "0010_rollout_rows_neutral")

OLD_VALUES = {
    "previous_task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:1",
    "new_task_definition": "arn:aws:ecs:us-east-1:123456789012:task-definition/web:2",
    "deployment_id": "ecs-svc/1111",
    "rollback_deployment_id": "ecs-svc/2222",
}


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_the_old_columns_carry_over_and_detail_starts_empty():
    try:
        old = migrate(BEFORE)
        user = old.get_model("auth", "User").objects.create(username="alice")
        application = old.get_model("deploys", "Application").objects.create(
            slug="shop", name="Shop", git_remote_url="/nowhere.git"
        )
        deploy = old.get_model("deploys", "Deploy").objects.create(
            application=application, branch="feature/x", requester=user
        )
        cluster = old.get_model("clusters", "Cluster").objects.create(name="demo")
        service = old.get_model("clusters", "Service").objects.create(
            application=application, name="web", process_type="web"
        )
        placement = old.get_model("clusters", "Placement").objects.create(
            service=service, cluster=cluster, ecs_service_name="web", container_name="app"
        )
        row = old.get_model("deploys", "ServiceRollout").objects.create(
            deploy=deploy, placement=placement, phase=1, **OLD_VALUES
        )

        new = migrate([AFTER])
        migrated = new.get_model("deploys", "ServiceRollout").objects.get(pk=row.pk)

        assert (
            migrated.revision_before,
            migrated.revision_made,
            migrated.start_handle,
            migrated.restore_handle,
        ) == tuple(OLD_VALUES.values())
        assert migrated.detail == {}
    finally:
        migrate(latest())

    # Back at the latest state: today's model reads the row too.
    from deploys.models import ServiceRollout

    assert ServiceRollout.objects.get(pk=row.pk).start_handle == "ecs-svc/1111"
