"""The build log over the JSON API: read a part from an offset, then ask again from the next."""

import re

from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from deploys.models import Deploy
from fatcontroller.api_schema import errors
from fatcontroller.apiviews import APIView

from .logs import LOG_SLICE_MAX_CHARS, log_slice
from .models import Build, BuildStatus

# Longer than any offset a log reaches; refused rather than turned into a huge integer.
_MAX_OFFSET_DIGITS = 18


class BuildLogPartSerializer(serializers.Serializer):
    """A part of the log, and where to read on from."""

    # The schema's only: the view answers a dict it builds from a LogSlice.

    deploy = serializers.IntegerField()
    attempt = serializers.IntegerField()
    status = serializers.ChoiceField(choices=BuildStatus.choices, help_text="The build's, now.")
    finished = serializers.BooleanField(
        help_text="The build is over and this part reaches the log's end: nothing more will "
        "come, stop asking."
    )
    offset = serializers.IntegerField(
        help_text="Where `text` starts: the offset asked for, or the first character the cap "
        "kept when that one was cut."
    )
    next_offset = serializers.IntegerField(help_text="Ask from here next: offset + len(text).")
    end = serializers.IntegerField(
        help_text="The log's end as written when read; next_offset < end means more is there "
        "already (ask again at once)."
    )
    text = serializers.CharField(allow_blank=True, help_text="The log from `offset` on.")
    cut_chars = serializers.IntegerField(
        help_text="Characters the cap (FC_BUILD_LOG_MAX_CHARS) cut from the log's start."
    )
    missed_chars = serializers.IntegerField(
        help_text="Characters asked for that the cap had already cut, so never sent."
    )


def _offset(value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise ValidationError({"offset": ["Must be a whole number, 0 or more."]})
    if len(value.lstrip("0")) > _MAX_OFFSET_DIGITS:
        raise ValidationError({"offset": ["Too large."]})
    return int(value)


READING_A_LOG = " ".join(
    f"""
A build's log is read as it grows, a part at a time: ask from `offset` 0, show `text`, then
ask again from `next_offset`: at once while `next_offset` < `end` (a part carries at most
{LOG_SLICE_MAX_CHARS} characters), every few seconds while the build runs, and stop when
`finished` is true. Offsets count characters of the log as written: the cap on a log's length
cuts its start, and an offset given out stays valid (`missed_chars` says what was cut before
it was read). The answer is never cached.
""".split()
)


class BuildLogView(APIView):
    """GET /api/deploys/<pk>/builds/<attempt>/log?offset=N: the log from offset N.

    Offsets count characters in the log as written, so they stay valid when the cap cuts
    the start; `next_offset` is where the next read starts, `finished` says nothing more
    will come.
    """

    @extend_schema(
        operation_id="builds_log",
        summary="A part of a build's log",
        description=READING_A_LOG,
        parameters=[
            OpenApiParameter(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": 10**_MAX_OFFSET_DIGITS - 1},
                default=0,
                description="Where to start, in characters of the log as written.",
            )
        ],
        responses={200: BuildLogPartSerializer, **errors(400, 401, 404)},
    )
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
