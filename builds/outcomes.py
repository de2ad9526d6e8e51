"""Who hears that a build attempt ended, with its verdict.

builds knows nothing of what a deploy does next: deploys registers its listener in its
AppConfig.ready() (deploys.pipeline.build_finished), and building.py tells whoever listens.
"""

from __future__ import annotations

from collections.abc import Callable

_listeners: list[Callable[..., None]] = []


def listen(listener: Callable[..., None]) -> None:
    """`listener(deploy, build, passed=..., summary=...)` runs for every attempt that ends."""
    if listener not in _listeners:
        _listeners.append(listener)


def attempt_finished(deploy, build, *, passed: bool, summary: str) -> None:
    for listener in _listeners:
        listener(deploy, build, passed=passed, summary=summary)
