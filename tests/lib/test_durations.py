"""lib.durations.in_words: the examples people read, and the rule's properties for any value."""

import re
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lib.durations import in_words

UNIT_SECONDS = {"d": 86400, "h": 3600, "min": 60, "s": 1}
UNIT_ORDER = list(UNIT_SECONDS)
PART = re.compile(r"(0|[1-9][0-9]*) (d|h|min|s)")

seconds = st.integers(min_value=0, max_value=10_000 * 86400)


def parts(text: str) -> list[tuple[int, str]]:
    found = text.split(" ")
    assert len(found) in (2, 4), text
    pairs = [" ".join(found[i : i + 2]) for i in range(0, len(found), 2)]
    assert all(PART.fullmatch(pair) for pair in pairs), text
    return [(int(n), unit) for n, unit in (pair.split(" ") for pair in pairs)]


def value(text: str) -> int:
    return sum(n * UNIT_SECONDS[unit] for n, unit in parts(text))


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (0, "0 s"),
        (1, "1 s"),
        (45, "45 s"),
        (59, "59 s"),
        (60, "1 min"),
        (90, "1 min 30 s"),
        (725, "12 min 5 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h"),
        (3 * 3600 + 4 * 60 + 59, "3 h 4 min"),
        (7199, "1 h 59 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d"),
        (25 * 3600, "1 d 1 h"),
        (90061, "1 d 1 h"),
        (400 * 86400 + 3 * 3600, "400 d 3 h"),
    ],
)
def test_examples(duration, text):
    assert in_words(duration) == text
    assert in_words(timedelta(seconds=duration)) == text


@pytest.mark.parametrize(
    ("duration", "text"),
    [(0.4, "0 s"), (59.99, "59 s"), (60.5, "1 min"), (timedelta(milliseconds=1500), "1 s")],
)
def test_fractions_of_a_second_are_dropped_not_rounded(duration, text):
    assert in_words(duration) == text


@pytest.mark.parametrize("duration", [-1, -0.5, timedelta(seconds=-3600)])
def test_a_negative_duration_reads_zero(duration):
    assert in_words(duration) == "0 s"


@given(seconds)
def test_never_empty_and_at_most_two_neighbouring_units(duration):
    found = parts(in_words(duration))
    units = [unit for _, unit in found]
    if len(units) == 2:
        assert UNIT_ORDER.index(units[1]) == UNIT_ORDER.index(units[0]) + 1
        assert found[1][0] > 0  # a zero second unit is left out
        assert found[1][0] * UNIT_SECONDS[units[1]] < UNIT_SECONDS[units[0]]
    assert found[0][0] > 0 or duration == 0


@given(seconds)
def test_never_more_than_it_took_and_off_by_less_than_its_last_unit(duration):
    text = in_words(duration)
    # The words are exact to the unit after the first: seconds under a minute, minutes under
    # an hour... whether or not that unit is shown.
    first = UNIT_ORDER.index(parts(text)[0][1])
    resolution = UNIT_SECONDS[UNIT_ORDER[min(first + 1, len(UNIT_ORDER) - 1)]]
    assert 0 <= duration - value(text) < resolution


@given(seconds, seconds)
def test_more_time_never_reads_as_less(a, b):
    low, high = sorted((a, b))
    assert value(in_words(low)) <= value(in_words(high))
