"""The JSON API of clusters and services. Every view needs a logged-in user."""

from django.db.models import F
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from appconfig.export import export_app_config_data
from deploys.models import Application
from fatcontroller.api_schema import errors
from fatcontroller.apiviews import APIView

from .models import Cluster, ClusterReport
from .serializers import ClusterReportSerializer

REPORT_STATES = ("open", "closed", "all")
REPORTS_SHOWN = 200  # the newest; the cluster page shows the same

REPORTS = inline_serializer("ClusterReports", {"reports": ClusterReportSerializer(many=True)})


def _state_parameter(default: str) -> OpenApiParameter:
    return OpenApiParameter(
        "state", str, enum=REPORT_STATES, default=default, description="Which reports."
    )


class AppConfigView(APIView):
    """An application's configuration: the structure of its file (docs/app-config.md)."""

    @extend_schema(
        operation_id="applications_config",
        summary="An application's configuration",
        description="The application's configuration as the structure of its file "
        "(docs/app-config.md): what `manage.py load_config` would load to make it as it is.",
        responses={
            200: OpenApiResponse(OpenApiTypes.OBJECT, description="The file's structure."),
            **errors(401, 404),
        },
    )
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

    @extend_schema(
        operation_id="clusters_reports",
        summary="A cluster's health reports",
        description=f"Open ones first, then the newest; at most {REPORTS_SHOWN}.",
        parameters=[_state_parameter("all")],
        responses={200: REPORTS, **errors(400, 401, 404)},
    )
    def get(self, request, name: str):
        cluster = get_object_or_404(Cluster, name=name)
        return _reports(request, cluster.reports.all(), default="all")


class OpenReportsView(APIView):
    """Every cluster's open reports (?state=closed or all for the others)."""

    @extend_schema(
        operation_id="reports",
        summary="Every cluster's health reports",
        description=f"Open ones unless ?state= says; open first, then the newest; at most "
        f"{REPORTS_SHOWN}.",
        parameters=[_state_parameter("open")],
        responses={200: REPORTS, **errors(400, 401)},
    )
    def get(self, request):
        return _reports(request, ClusterReport.objects.all(), default="open")
