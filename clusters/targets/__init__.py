"""Where services run, one module per kind of placement, each behind base.Target.

A placement's kind names its module: a placement of kind "ecs" is driven by
clusters/targets/ecs.py, whose `target_for(placement)` returns the Target for it. Adding a
target is one module here (plus its tests and the kind in clusters.models.PlacementKind);
the rollout engine (deploys/rollout/) finds it by the kind and needs no change.

Nothing here imports deploys: targets know placements, images and revisions, not deploys.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache

from .base import Target


@cache
def drives(kind: str) -> bool:
    """Is there a target module for placements of this kind?"""
    return importlib.util.find_spec(f"{__name__}.{kind}") is not None


def target_for(placement) -> Target:
    return importlib.import_module(f"{__name__}.{placement.kind}").target_for(placement)
