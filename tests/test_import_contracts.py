"""The import-linter contracts in pyproject.toml hold, and they would catch a back-import.

`make lint` runs them too; here they also prove they can fail: the same contracts run over
a copy of the code with one import that points the wrong way.
"""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The packages the contracts name, as pyproject.toml lists them: a new one is copied too.
PACKAGES = tuple(
    tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy_of_the_code(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    answer = lint_imports(ROOT)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "0 broken" in answer.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "contract"),
    [
        ("deploys/statemachine.py", "from deploys import pipeline", "deploys: faces"),
        ("clusters/targets/ecs.py", "from deploys import models", "targets and build backends"),
        ("builds/building.py", "from deploys import pipeline", "builds tell deploys"),
        ("lib/git.py", "import django", "lib needs no Django"),
        ("deploys/views.py", "import devtools.demo", "never imports devtools"),
    ],
)
def test_a_back_import_breaks_its_contract(copy_of_the_code, module, back_import, contract):
    path = copy_of_the_code / module
    path.write_text(path.read_text() + f"\n{back_import}  # the wrong way\n")

    answer = lint_imports(copy_of_the_code)

    assert answer.returncode != 0, answer.stdout
    broken = answer.stdout.split("Broken contracts")[-1]
    assert contract in broken, answer.stdout
