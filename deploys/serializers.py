from django.urls import reverse
from rest_framework import serializers

from builds.models import Build
from clusters.models import PlacementKind

from .actions import allowed_actions
from .docker_batches import batches_of
from .models import Deploy, DeployEvent, ServiceRollout
from .sides import services_of
from .slot import queue_position


class BuildSerializer(serializers.ModelSerializer):
    url = serializers.CharField(source="external_url")
    log_url = serializers.SerializerMethodField()

    class Meta:
        model = Build
        fields = [
            "attempt",
            "status",
            "backend",
            "build_number",
            "image_tag",
            "summary",
            "url",
            "log_url",
            "started_at",
            "finished_at",
        ]

    def get_log_url(self, build: Build) -> str:
        return reverse("api-build-log", args=[build.deploy_id, build.attempt])


class RolloutSerializer(serializers.ModelSerializer):
    service = serializers.CharField(source="placement.service.name")
    kind = serializers.CharField(source="placement.kind")
    # None for a legacy job, which runs on no cluster.
    cluster = serializers.CharField(source="placement.cluster.name", allow_null=True, default=None)
    ecs_service = serializers.CharField(source="placement.ecs_service_name")
    legacy = serializers.SerializerMethodField()
    batches = serializers.SerializerMethodField()
    # The API keeps the names it had when ECS was the only target.
    previous_task_definition = serializers.CharField(source="revision_before")
    new_task_definition = serializers.CharField(source="revision_made")
    deployment_id = serializers.CharField(source="start_handle")

    class Meta:
        model = ServiceRollout
        fields = [
            "phase",
            "service",
            "kind",
            "cluster",
            "ecs_service",
            "legacy",
            "batches",
            "status",
            "previous_task_definition",
            "new_task_definition",
            "image",
            "deployment_id",
            "running_count",
            "desired_count",
            "message",
        ]

    def get_legacy(self, rollout: ServiceRollout) -> dict | None:
        """A legacy job's side: its job and its latest run's Jenkins build and result."""
        if rollout.placement.kind != PlacementKind.LEGACY:
            return None
        [side] = services_of([rollout], with_logs=False)[0].sides
        run = side.run
        return {
            "job": rollout.placement.legacy_job,
            "build_number": run.build_number if run else None,
            "build_url": run.build_url if run else "",
            "result": run.result if run else "",
            "purpose": run.purpose if run else "",
        }

    def get_batches(self, rollout: ServiceRollout) -> list[dict] | None:
        """A Docker placement's container batches ({batch, events: [{event, containers,
        exit_code}]}), read as the deploy page reads them; None for other kinds."""
        if rollout.placement.kind != PlacementKind.DOCKER:
            return None
        return [batch.as_json() for batch in batches_of(rollout.detail)]


class EventSerializer(serializers.Serializer):
    # "from" is a Python keyword, so it cannot be a declared field: get_fields() makes them
    # all, in the order they are answered (and the schema reads them the same way).
    def get_fields(self) -> dict:
        return {
            "time": serializers.DateTimeField(source="created_at"),
            "actor": serializers.SerializerMethodField(),
            "from": serializers.CharField(source="from_state"),
            "to": serializers.CharField(source="to_state"),
            "message": serializers.CharField(),
        }

    def get_actor(self, event: DeployEvent) -> str:
        return event.actor.get_username() if event.actor else "fatcontroller"


class DeploySummarySerializer(serializers.ModelSerializer):
    application = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requester = serializers.CharField(source="requester.get_username")

    class Meta:
        model = Deploy
        fields = [
            "id",
            "application",
            "branch",
            "mode",
            "state",
            "requester",
            "note",
            "created_at",
            "started_at",
            "finished_at",
        ]


class DeploySerializer(DeploySummarySerializer):
    position_in_queue = serializers.SerializerMethodField()
    # What may be asked of it now, as the paths of its action endpoints: the same rule as the
    # page's buttons (actions.allowed_actions). context["user"] is who asks.
    actions = serializers.SerializerMethodField()
    # restore_of's old name, kept as the old /rollback/ path is.
    rollback_of = serializers.PrimaryKeyRelatedField(
        source="restore_of", read_only=True, allow_null=True
    )
    builds = BuildSerializer(many=True, read_only=True)
    rollouts = RolloutSerializer(many=True, read_only=True)
    events = EventSerializer(many=True, read_only=True)

    class Meta(DeploySummarySerializer.Meta):
        fields = DeploySummarySerializer.Meta.fields + [
            "position_in_queue",
            "head_sha",
            "candidate_sha",
            "held_until",
            "verify_until",
            "restore_of",
            "rollback_of",
            "actions",
            "builds",
            "rollouts",
            "events",
        ]

    def get_position_in_queue(self, deploy) -> int | None:
        return queue_position(deploy)

    def get_actions(self, deploy: Deploy) -> list[str]:
        return sorted(allowed_actions(deploy, self.context.get("user")))
