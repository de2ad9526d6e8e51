"""The JSON of the clusters' API (clusters/api.py)."""

from rest_framework import serializers

from .models import ClusterReport


class ClusterReportSerializer(serializers.ModelSerializer):
    cluster = serializers.CharField(source="cluster.name")
    kind_display = serializers.CharField(source="get_kind_display")

    class Meta:
        model = ClusterReport
        fields = [
            "id",
            "cluster",
            "kind",
            "kind_display",
            "subject",
            "message",
            "detail",
            "opened_at",
            "closed_at",
            "closed_why",
            "drained",
        ]
        read_only_fields = fields
