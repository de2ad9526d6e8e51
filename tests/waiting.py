"""Waiting for work done elsewhere (a worker, a server, a subprocess): poll with a deadline,
never sleep for a guessed time."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    what: str | Callable[[], str] = "it",
    interval: float = 0.02,
) -> T:
    """Poll until predicate() is truthy and return its value; fail after the deadline.

    `what` says what was awaited: a string, or a callable that builds the message only
    when the wait fails (a log, a timeline).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout} s waiting for {said}")
        time.sleep(interval)
