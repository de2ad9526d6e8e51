"""Path converters: a URL matches only when its ids can name a row.

`<id:pk>` matches 1 to MAX_ID (2**63 - 1, a bigint's largest) and nothing else. Django's own
`<int:...>` matches any length of digits, and a number past a bigint reaches the database:
SQLite raises OverflowError (a 500) where PostgreSQL finds nothing (a 404). With this
converter, 0, 2**63 and a thousand digits never match, so every such URL is a 404 on every
database, pages and API alike. Leading zeros are allowed, as `<int:...>` allows them.

Importing this module registers the converter; each urls.py that uses it imports it.
"""

from django.urls import register_converter

MAX_ID = 2**63 - 1
_MAX_DIGITS = len(str(MAX_ID))


def in_id_range(value: int) -> bool:
    """Whether `value` can be the id of a row (or a build attempt's number)."""
    return 1 <= value <= MAX_ID


class IdConverter:
    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        digits = value.lstrip("0")
        # Checked by length first: int() of a huge string of digits is slow, or refused.
        if len(digits) > _MAX_DIGITS or not digits or not in_id_range(int(digits)):
            raise ValueError(f"not an id: {value[:30]}")  # Django answers 404
        return int(digits)

    def to_url(self, value) -> str:
        if isinstance(value, bool) or not in_id_range(int(value)):
            raise ValueError(f"not an id: {value!r}")
        return str(int(value))


register_converter(IdConverter, "id")
