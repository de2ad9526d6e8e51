"""The demo application: a small git remote whose branches show what Fat Controller does.

Made once under var/demo. Its build script really runs, in the candidate checkout, so the
demo's builds pass, fail and flake for real.
"""

import os
import subprocess
import tempfile
from pathlib import Path

DEMO_SLUG = "demo-shop"
BUILD_COMMAND = "sh build.sh"

MAIN_FILES = {
    "README.md": "# Demo shop\n\nA pretend shop that Fat Controller ships in its demo.\n",
    "VERSION": "1.0.0\n",
    "shop/prices.txt": "apple 0.40\npear 0.55\nplum 0.30\n",
    "build.sh": """#!/bin/sh
# The demo's build: three checks, each a script under checks/, run one after another.
set -e
echo "== building demo-shop, attempt ${FC_BUILD_ATTEMPT:-1}"
for check in lint unit integration; do
    echo "-- $check"
    sh "checks/$check.sh"
    sleep 1
done
echo "== all checks passed"
""",
    "checks/lint.sh": 'echo "lint: 3 files, no problems"\n',
    "checks/unit.sh": 'echo "unit: 12 tests passed"\n',
    "checks/integration.sh": 'echo "integration: 4 tests passed"\n',
}

# branch -> (commit message, files it changes)
BRANCHES = {
    "feature/clean-merge": (
        "Add an about page",
        {"shop/about.txt": "We sell fruit.\n"},
    ),
    "feature/flaky-test": (
        "Add a checkout test that flakes",
        {
            "checks/integration.sh": """# The first build of a candidate meets a flaky timeout.
if [ "${FC_BUILD_ATTEMPT:-1}" = "1" ]; then
    echo "FAIL test_checkout: timed out waiting for the payment stub (flaky)"
    exit 1
fi
echo "integration: 5 tests passed"
""",
        },
    ),
    "feature/broken-build": (
        "Change prices without updating the tests",
        {
            "checks/unit.sh": 'echo "FAIL test_prices: expected apple 0.40, got 0.45"\nexit 1\n',
        },
    ),
    "feature/conflicting-prices": (
        "Raise the price of pears",
        {"shop/prices.txt": "apple 0.40\npear 0.65\nplum 0.30\n"},
    ),
}

# Lands on main after the branches were cut, so feature/conflicting-prices conflicts.
MAIN_AFTER_BRANCHES = (
    "Lower the price of pears",
    {"shop/prices.txt": "apple 0.40\npear 0.50\nplum 0.30\n"},
)


def create_demo_remote(remote: Path) -> Path:
    """Create the bare remote at `remote` (once) and return it."""
    if (remote / "HEAD").exists():
        return remote
    remote.parent.mkdir(parents=True, exist_ok=True)
    # Built aside and moved into place, so a run stopped halfway leaves nothing half made.
    with tempfile.TemporaryDirectory(dir=remote.parent) as scratch:
        bare, work = Path(scratch) / "remote.git", Path(scratch) / "seed"
        _git(Path(scratch), "init", "-q", "--bare", "--initial-branch=main", str(bare))
        _git(Path(scratch), "init", "-q", "--initial-branch=main", str(work))
        _commit(work, "Start the demo shop", MAIN_FILES)
        for branch, (message, files) in BRANCHES.items():
            _git(work, "checkout", "-q", "-b", branch, "main")
            _commit(work, message, files)
        _git(work, "checkout", "-q", "main")
        _commit(work, *MAIN_AFTER_BRANCHES)
        _git(work, "push", "-q", str(bare), "--all")
        bare.rename(remote)
    return remote


def _commit(work: Path, message: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(work, "add", "--all")
    _git(work, "commit", "-q", "-m", message)


def _git(cwd: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Demo Developer",
        "GIT_AUTHOR_EMAIL": "demo@example.com",
        "GIT_COMMITTER_NAME": "Demo Developer",
        "GIT_COMMITTER_EMAIL": "demo@example.com",
    }
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, timeout=60)
