"""What every API view's OpenAPI description shares: the error shape and its answers.

deploys.api_errors makes every error {"errors": {field: [messages]}}; ERRORS_SHAPE is that
shape in the schema, and errors(400, 404, ...) the documented answers with it, so a view
lists only the codes it can answer. The schema (/api/schema/) is tested against the running
API (tests/test_api_schema.py): an answer this module leaves out fails there.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema_serializer
from rest_framework import serializers


@extend_schema_serializer(component_name="Errors")
class ErrorsSerializer(serializers.Serializer):
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text=(
            "Each field of the request that was refused, with why; `detail` when the answer "
            "names no field (a 401, a 403, a 404), `state` for a 409."
        ),
    )


_WHY = {
    400: (
        "Bad input: a field is missing or wrong, or the body is not JSON Fat Controller takes "
        "(not an object, NUL characters or lone surrogates, nested past 64 levels). "
        "Nothing changed."
    ),
    401: "No session and no valid `Authorization: Token <key>`.",
    403: "Logged in, but your role on the application does not allow it (a viewer, say). "
    "Nothing changed.",
    404: "No such deploy, application, build or cluster.",
    409: "The state does not allow it now (a deploy already finished, an application already "
    "locked, a move a rule refuses). Nothing changed.",
    415: "A body in a media type the API does not read: send application/json (or a form).",
}


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """The documented error answers with these status codes, each in the errors shape."""
    return {code: OpenApiResponse(ErrorsSerializer, description=_WHY[code]) for code in codes}
