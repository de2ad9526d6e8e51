"""Every API error body has the same shape: {"errors": {field: [messages]}}.

Errors that name fields (a ValidationError, or a ParseError from fatcontroller.parsers saying
which field of the body holds a NUL) keep their fields; any other error is {"detail": [...]}.
"""

from django.core.exceptions import PermissionDenied
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The deploy's state does not allow that."
    default_code = "conflict"


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    # Django's Http404 and PermissionDenied arrive as themselves, without a detail.
    detail = getattr(exc, "detail", None)
    if isinstance(exc, PermissionDenied) and str(exc):  # roles.NotAllowed says why
        response.data = {"errors": {"detail": [str(exc)]}}
    elif isinstance(exc, Conflict):
        response.data = {"errors": {"state": [str(exc.detail)]}}
    elif isinstance(detail, dict):
        response.data = {"errors": response.data}
    elif isinstance(detail, list):  # ValidationError("one message"): no field to name
        response.data = {"errors": {"detail": [str(message) for message in detail]}}
    else:
        response.data = {"errors": {"detail": [str(response.data.get("detail", exc))]}}
    return response
