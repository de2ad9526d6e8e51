"""Reading build logs a part at a time, in the database: a live page asks only for what is new.

Offsets count characters in the log as written. The cap (FC_BUILD_LOG_MAX_CHARS) cuts the start
of a long log and counts what it cut in `log_cut_chars`, so the first character kept is at
offset `log_cut_chars` and an offset a reader was given never moves: the next read goes on from
exactly where the last one stopped, however much was cut meanwhile.
"""

from dataclasses import dataclass

from django.db.models import BigIntegerField, F, IntegerField, QuerySet, Value
from django.db.models.functions import Cast, Greatest, Least, Length, Right, Substr

from .models import FINISHED_BUILD_STATUSES, Build

# The most one answer carries; the reader asks again from next_offset for the rest.
LOG_SLICE_MAX_CHARS = 256 * 1024
# How much of the end of each log the deploy page shows: the end says why a build failed,
# and every character here is escaped and sent on each load of the page.
LOG_TAIL_CHARS = 16 * 1024
# Past any log's end, and small enough that the SQL arithmetic stays inside a bigint.
_MAX_OFFSET = 2**62


@dataclass(frozen=True)
class LogSlice:
    """A part of a build's log, and where to go on from."""

    text: str
    offset: int  # where `text` starts in the log as written (the offset asked, moved if it must)
    next_offset: int  # where the next read starts: offset + len(text)
    end: int  # the log's end as written when read; next_offset < end means more is there
    cut_chars: int  # characters the cap cut from the start of the log
    missed_chars: int  # characters asked for that the cap had already cut
    status: str
    finished: bool  # the build is over and this part reaches the end: nothing more will come


@dataclass(frozen=True)
class LogTail:
    """The end of a build's log, for the page."""

    text: str
    offset: int  # where `text` starts in the log as written
    next_offset: int  # the log's end: where a live reader goes on from
    hidden_chars: int  # kept characters before `text`, not shown
    cut_chars: int  # characters the cap cut from the start of the log


def _builds(build: "int | Build | QuerySet[Build]") -> QuerySet:
    if isinstance(build, QuerySet):
        return build
    return Build.objects.filter(pk=build.pk if isinstance(build, Build) else build)


def log_slice(
    build: "int | Build | QuerySet[Build]", offset: int, *, limit_chars: int = LOG_SLICE_MAX_CHARS
) -> LogSlice:
    """Read at most `limit_chars` of a build's log from `offset`, in one query.

    `build` is a Build, its id, or a queryset narrowed to one build. Only the part asked for
    leaves the database, with the row's status and cut count read in the same statement. An
    offset the cap has already cut is served from the first character kept, saying how many
    were missed; an offset past the end is served as the end, with no text.
    Raises Build.DoesNotExist if there is no such build, ValueError for a negative offset.
    """
    if offset < 0:
        raise ValueError("offset must not be negative")
    if limit_chars < 1:
        raise ValueError("limit_chars must be positive")
    asked = Value(min(offset, _MAX_OFFSET), output_field=BigIntegerField())
    # Where the part starts in the kept text, 0-based, between 0 and the kept length.
    start = Least(
        Greatest(asked - F("log_cut_chars"), Value(0), output_field=BigIntegerField()),
        Length("log"),
        output_field=BigIntegerField(),
    )
    row = (
        _builds(build)
        .order_by()
        .annotate(
            log_length=Length("log"),
            log_part=Substr(
                "log", Cast(start, IntegerField()) + Value(1), Value(min(limit_chars, 2**31 - 1))
            ),
        )
        .values("status", "log_cut_chars", "log_length", "log_part")
        .first()
    )
    if row is None:
        raise Build.DoesNotExist("no such build")
    cut = row["log_cut_chars"]
    end = cut + row["log_length"]
    text = row["log_part"] or ""
    served = min(max(offset, cut), end)
    next_offset = served + len(text)
    return LogSlice(
        text=text,
        offset=served,
        next_offset=next_offset,
        end=end,
        cut_chars=cut,
        missed_chars=max(0, cut - offset),
        status=row["status"],
        finished=row["status"] in FINISHED_BUILD_STATUSES and next_offset >= end,
    )


def with_log_tail(builds: QuerySet, chars: int = LOG_TAIL_CHARS) -> QuerySet:
    """The builds without their whole log, each with its last `chars` characters and its
    length read in the same query (for log_tail)."""
    return builds.defer("log").annotate(log_length=Length("log"), log_tail=Right("log", chars))


def log_tail(build: Build, chars: int = LOG_TAIL_CHARS) -> LogTail:
    """The end of a build's log. Free for a build read through with_log_tail; otherwise one
    query, which still reads only the end of the log."""
    if not hasattr(build, "log_tail"):
        build = with_log_tail(Build.objects.filter(pk=build.pk), chars).get()
    text = build.log_tail or ""
    length = build.log_length or 0
    end = build.log_cut_chars + length
    return LogTail(
        text=text,
        offset=end - len(text),
        next_offset=end,
        hidden_chars=length - len(text),
        cut_chars=build.log_cut_chars,
    )
