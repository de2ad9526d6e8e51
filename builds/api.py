"""The build log over the JSON API: read a part from an offset, then ask again from the next."""

import re

from django.utils.cache import add_never_cache_headers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from deploys.models import Deploy
from fatcontroller.apiviews import APIView

from .logs import log_slice
from .models import Build

# Longer than any offset a log reaches; refused rather than turned into a huge integer.
_MAX_OFFSET_DIGITS = 18


def _offset(value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise ValidationError({"offset": ["Must be a whole number, 0 or more."]})
    if len(value.lstrip("0")) > _MAX_OFFSET_DIGITS:
        raise ValidationError({"offset": ["Too large."]})
    return int(value)


class BuildLogView(APIView):
    """GET /api/deploys/<pk>/builds/<attempt>/log?offset=N: the log from offset N.

    Offsets count characters in the log as written, so they stay valid when the cap cuts
    the start; `next_offset` is where the next read starts, `finished` says nothing more
    will come.
    """

    def get(self, request, pk: int, attempt: int):
        offset = _offset(request.query_params.get("offset", "0"))
        try:
            part = log_slice(Build.objects.filter(deploy_id=pk, attempt=attempt), offset)
        except Build.DoesNotExist:
            if Deploy.objects.filter(pk=pk).exists():
                raise NotFound(f"Deploy #{pk} has no build {attempt}.") from None
            raise NotFound(f"There is no deploy #{pk}.") from None
        response = Response(
            {
                "deploy": pk,
                "attempt": attempt,
                "status": part.status,
                "finished": part.finished,
                "offset": part.offset,
                "next_offset": part.next_offset,
                "end": part.end,
                "text": part.text,
                "cut_chars": part.cut_chars,
                "missed_chars": part.missed_chars,
            }
        )
        add_never_cache_headers(response)
        return response
