"""The audit page (/audit/) and its API (/api/audit/): read only, filtered (deploys/audit.py)."""

from django.shortcuts import render
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from accounts.audit import ACTIONS
from fatcontroller.api_schema import errors
from fatcontroller.apiviews import APIView

from . import audit
from .api_schema import AuditEntriesSerializer


def _filters(params) -> dict[str, str]:
    return {name: str(params.get(name, "")).strip() for name in ("action", "application", "actor")}


def audit_page(request):
    filters = _filters(request.GET)
    context = {"filters": filters, "actions": ACTIONS, "shown": audit.SHOWN}
    try:
        context["entries"] = audit.entries(request.user, **filters)
    except audit.BadFilter as exc:  # roles.NotAllowed goes on: a 403 page saying why
        context["entries"], context["errors"] = [], exc.errors
        return render(request, "deploys/audit.html", context, status=400)
    return render(request, "deploys/audit.html", context)


class AuditView(APIView):
    """GET ?action=&application=&actor=: the newest entries the person may read."""

    @extend_schema(
        operation_id="audit_entries",
        summary="The audit log",
        description=f"The newest {audit.SHOWN} entries you may read (staff: all; a maintainer: "
        "those of the applications they maintain), filtered by any of the parameters.",
        parameters=[
            OpenApiParameter("action", str, description="One action: queue, lock, login..."),
            OpenApiParameter("application", str, description="An application's slug."),
            OpenApiParameter("actor", str, description="A user name."),
        ],
        responses={200: AuditEntriesSerializer, **errors(400, 401, 403)},
    )
    def get(self, request):
        try:
            found = audit.entries(request.user, **_filters(request.query_params))
        except audit.BadFilter as exc:
            raise ValidationError(exc.errors) from None
        return Response({"entries": [audit.as_data(e) for e in found]})
