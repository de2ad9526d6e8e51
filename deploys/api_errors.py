"""Every API error body has the same shape: {"errors": {field: [messages]}}."""

from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.views import exception_handler as drf_exception_handler


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The deploy's state does not allow that."
    default_code = "conflict"


def exception_handler(exc, context):
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, ValidationError) and isinstance(response.data, dict):
        response.data = {"errors": response.data}
    elif isinstance(exc, Conflict):
        response.data = {"errors": {"state": [str(exc.detail)]}}
    else:
        response.data = {"errors": {"detail": [str(response.data.get("detail", exc))]}}
    return response
