"""The JSON API of clusters and services. Every view needs a logged-in user."""

from django.db.models import F
from django.shortcuts import get_object_or_404
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from appconfig.export import export_app_config_data
from deploys.models import Application
from fatcontroller.apiviews import APIView

from .models import Cluster, ClusterReport
from .serializers import ClusterReportSerializer

REPORT_STATES = ("open", "closed", "all")
REPORTS_SHOWN = 200  # the newest; the cluster page shows the same


class AppConfigView(APIView):
    """An application's configuration: the structure of its file (docs/app-config.md)."""

    def get(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        return Response(export_app_config_data(application))


def _reports(request, reports, *, default: str):
    """Reports filtered by ?state= (open, closed or all), open ones first, newest first."""
    state = request.query_params.get("state", default)
    if state not in REPORT_STATES:
        raise ValidationError({"state": [f"must be one of {', '.join(REPORT_STATES)}"]})
    if state != "all":
        reports = reports.filter(closed_at__isnull=state == "open")
    reports = reports.select_related("cluster").order_by(
        F("closed_at").desc(nulls_first=True), "-opened_at", "-id"
    )[:REPORTS_SHOWN]
    return Response({"reports": ClusterReportSerializer(reports, many=True).data})


class ClusterReportsView(APIView):
    """A cluster's health reports (clusters/health): all of them unless ?state= says."""

    def get(self, request, name: str):
        cluster = get_object_or_404(Cluster, name=name)
        return _reports(request, cluster.reports.all(), default="all")


class OpenReportsView(APIView):
    """Every cluster's open reports (?state=closed or all for the others)."""

    def get(self, request):
        return _reports(request, ClusterReport.objects.all(), default="open")
