"""The git remotes the tests push to: what their branches point at."""

import subprocess
from pathlib import Path


def remote_main(remote: Path) -> str:
    """Where the remote's main branch points now ("" if it has none)."""
    return subprocess.run(
        ["git", "rev-parse", "refs/heads/main"], cwd=remote, capture_output=True, text=True
    ).stdout.strip()
