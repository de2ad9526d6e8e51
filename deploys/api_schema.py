"""The shapes of the answers the API builds as plain dicts, for its OpenAPI schema only.

The queue, the lock, the migration plan and the audit entries are answered as dicts made by
the code that reads them (slot, applications, migration_api, audit), not through these
serializers: these say what that code answers. tests/test_api_schema.py checks the answers
of the running API against them, so the two cannot drift apart unnoticed.
"""

from drf_spectacular.utils import inline_serializer
from rest_framework import serializers

from clusters.models import MigrationState

from .serializers import DeploySummarySerializer


class QueuedDeploySerializer(DeploySummarySerializer):
    position_in_queue = serializers.IntegerField(help_text="1 for the next to take the slot.")

    class Meta(DeploySummarySerializer.Meta):
        fields = DeploySummarySerializer.Meta.fields + ["position_in_queue"]


class QueueSerializer(serializers.Serializer):
    application = serializers.CharField()
    locked = serializers.BooleanField()
    lock_reason = serializers.CharField(allow_blank=True)
    holder = DeploySummarySerializer(allow_null=True, help_text="The deploy holding the slot.")
    waiting = QueuedDeploySerializer(many=True)


class LockStateSerializer(serializers.Serializer):
    application = serializers.CharField()
    locked = serializers.BooleanField()
    lock_reason = serializers.CharField(allow_blank=True)
    locked_by = serializers.CharField(allow_null=True)
    locked_at = serializers.DateTimeField(allow_null=True)


def _moves_done():
    # "from" is a Python keyword: made from a dict of fields, not declared.
    return inline_serializer(
        "MigrationMoveDone",
        {
            "by": serializers.CharField(),
            "at": serializers.DateTimeField(),
            "from": serializers.ChoiceField(choices=MigrationState.choices),
            "to": serializers.ChoiceField(choices=MigrationState.choices),
            "reason": serializers.CharField(),
            "forced": serializers.BooleanField(),
        },
        many=True,
    )


class PhaseServiceSerializer(serializers.Serializer):
    name = serializers.CharField()
    runs_on = serializers.CharField(help_text='"legacy", "both", "ECS", or "nowhere".')


class ProofSerializer(serializers.Serializer):
    service = serializers.CharField()
    deploys = serializers.IntegerField()
    deploys_needed = serializers.IntegerField()
    hours = serializers.FloatField()
    hours_needed = serializers.IntegerField()
    proven = serializers.BooleanField()


class MigrationPhaseSerializer(serializers.Serializer):
    position = serializers.IntegerField()
    name = serializers.CharField()
    state = serializers.ChoiceField(choices=MigrationState.choices)
    state_since = serializers.DateTimeField()
    services = PhaseServiceSerializer(many=True)
    next_state = serializers.ChoiceField(choices=MigrationState.choices, allow_null=True)
    blockers = serializers.ListField(
        child=serializers.CharField(), help_text="Why the next move is refused now."
    )
    may_force = serializers.BooleanField(
        help_text="Whether you may force the next move (the order is the only rule in its way)."
    )
    proof = ProofSerializer(many=True, help_text="The ECS side's proof so far, while dual running.")
    moves = _moves_done()


class PlanProofSerializer(serializers.Serializer):
    deploys = serializers.IntegerField()
    hours = serializers.IntegerField()


class MigrationPlanSerializer(serializers.Serializer):
    application = serializers.CharField()
    proof = PlanProofSerializer(help_text="What a phase must prove before it moves on.")
    phases = MigrationPhaseSerializer(many=True)


class AuditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    actor = serializers.CharField()
    address = serializers.IPAddressField(allow_null=True)
    action = serializers.CharField()
    application = serializers.CharField(allow_null=True)
    subject = serializers.CharField(allow_blank=True)
    change = serializers.DictField(help_text="What changed, as the action records it.")


class AuditEntriesSerializer(serializers.Serializer):
    entries = AuditEntrySerializer(many=True)
