"""How request bodies are read: strictly, so that bad input is a 400 and never a 500.

A JSON body is refused, before any view sees it, when it
- is not UTF-8, or not JSON, or uses NaN or Infinity, or has an integer too long to convert;
- nests arrays and objects deeper than MAX_JSON_DEPTH (Python's parser would otherwise
  recurse until RecursionError, a 500);
- holds anywhere, in a value or a key, a NUL character or a lone surrogate ("\\ud800" is valid
  JSON but not text PostgreSQL can store), or a number too big to be finite (1e999).
A form body (urlencoded or multipart) is refused for NUL or surrogates in any value.

loads() is the rule, for any view that reads JSON itself (the Jenkins hook); the parser
classes apply it to the API through REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] (and
fatcontroller.apiviews.APIView reads every body, so even an endpoint that ignores its body
refuses a bad one). Every refusal names the field, in the API's shape:
{"errors": {field: [messages]}}.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .text import bad_text_in

# Deeper than any body the API takes (the deepest, an application's config, is five levels)
# and far below where Python's own recursion limit would be hit.
MAX_JSON_DEPTH = 64
TOO_DEEP = f"JSON nested deeper than {MAX_JSON_DEPTH} levels of arrays and objects is refused."

# What changes the nesting, or whether we are inside a string.
_SIGNIFICANT = re.compile(r'[\[\]{}"\\]')


class JSONRejected(ValueError):
    """The body is not JSON Fat Controller accepts; `errors` says why, field by field."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(m)}" for field, m in errors.items()))


def loads(body: bytes | str, *, encoding: str = "utf-8") -> object:
    """The JSON value of `body`, or JSONRejected saying what is wrong with it."""
    try:
        text = body.decode(encoding) if isinstance(body, bytes) else body
    except (UnicodeDecodeError, LookupError):
        raise JSONRejected({"detail": [f"The body must be JSON encoded as {encoding}."]}) from None
    # Counted before parsing, without recursion: json.loads itself would recurse per level.
    if _depth_exceeds(text, MAX_JSON_DEPTH):
        raise JSONRejected({"detail": [TOO_DEEP]})
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:  # JSONDecodeError, and ints past Python's digit limit
        raise JSONRejected({"detail": [f"JSON parse error - {exc}"]}) from None
    errors = bad_text_in(value)
    if errors:
        raise JSONRejected(errors)
    return value


def _depth_exceeds(text: str, limit: int) -> bool:
    """Whether `text` opens more than `limit` arrays and objects at once, brackets inside
    strings not counted. One pass, no recursion, linear in the length whatever the input (a
    regular expression for whole strings goes quadratic on unterminated ones)."""
    depth = 0
    in_string = False
    escaped_until = -1
    for match in _SIGNIFICANT.finditer(text):
        if match.start() < escaped_until:  # the character after a backslash in a string
            continue
        char = match.group()
        if in_string:
            if char == "\\":
                escaped_until = match.end() + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


class StrictJSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return loads(stream.read(), encoding=encoding)
        except JSONRejected as exc:
            raise ParseError(exc.errors) from None


class StrictFormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        _refuse_bad_text(data)
        return data


class StrictMultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        _refuse_bad_text(parsed.data)
        return parsed


def _refuse_bad_text(data) -> None:
    errors = bad_text_in(data)
    if errors:
        raise ParseError(errors)
