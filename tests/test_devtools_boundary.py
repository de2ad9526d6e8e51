"""Production code never needs devtools or moto: the production image has neither.

Every import statement in the production packages, at any depth (a lazy import inside a
function counts), names no devtools module; and the project starts (`manage.py check`:
models, admin, URLs and so every view) in a process where moto and devtools cannot be
imported, and then lists no devtools app and offers none of its commands.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = ("fatcontroller", "deploys", "builds", "clusters", "monitoring", "lib")

# Run in a child: moto and devtools made unimportable (a None in sys.modules makes
# find_spec answer "not there" and an import fail), then Django set up and checked.
WITHOUT_DEVTOOLS = """
import sys
for name in ("moto", "devtools"):
    sys.modules[name] = None
import django
from django.conf import settings
from django.core.management import call_command, get_commands
django.setup()
assert "devtools" not in settings.INSTALLED_APPS, settings.INSTALLED_APPS
assert not {"demo", "runmoto", "runjenkins", "runembedded"} & set(get_commands())
call_command("check")
"""


def imported_modules(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_no_production_module_imports_devtools():
    offending = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in PRODUCTION
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in imported_modules(path)
        if name == "devtools" or name.startswith("devtools.")
    ]
    assert offending == []


def test_the_project_starts_without_moto_and_without_the_devtools_app():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "fatcontroller.settings"}
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_DEVTOOLS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_devtools_app_is_listed_where_moto_is(settings):
    assert "devtools" in settings.INSTALLED_APPS
