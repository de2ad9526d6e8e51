"""The Ledger protocol (clusters/targets/base.py) in memory, for the target tests."""

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    """A placement's notes for one rollout, in memory, keeping its writes in order."""

    revision_before: str = ""
    revision_made: str = ""
    start_handle: str = ""
    restore_handle: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    commit: str = ""
    writes: list[dict[str, Any]] = field(default_factory=list)

    def write(self, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(self, name, value)
        self.writes.append(fields)
