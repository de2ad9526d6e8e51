import os
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from clusters.models import Service
from tests.appconfig.files import (
    EXAMPLE,
    ROOT,
    changed,
    db_state,
    edited_example,
    example_text,
    set_in,
)


@pytest.mark.django_db
def test_the_command_with_dry_run_changes_nothing(application, capsys):
    before = db_state(application)
    call_command("load_app_config", str(EXAMPLE), "--dry-run")
    out = capsys.readouterr().out
    assert "(dry run: nothing was written)" in out
    assert "  created service web (web, phase 3)" in out
    assert db_state(application) == before
    assert not Service.objects.exists()


@pytest.mark.django_db
def test_the_command_loads_the_file_and_prints_warnings(application, tmp_path, capsys):
    call_command("load_app_config", str(EXAMPLE))
    assert "demo-shop: 10 created, 1 updated, 0 removed" in capsys.readouterr().out
    assert Service.objects.filter(application=application).count() == 4

    path = tmp_path / "web-first.yml"
    path.write_text(edited_example(lambda d: d["services"][3].update(phase=1)))
    call_command("load_app_config", str(path))
    captured = capsys.readouterr()
    assert "  updated service web: phase 3 -> 1" in captured.out
    assert "warning: services[3]: web service 'web' goes out in phase 1" in captured.err


@pytest.mark.django_db
def test_the_command_with_a_bad_file_raises_every_error(application, tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text(
        edited_example(
            lambda d: (d["services"][0].update(phase=0), d["build"].update(timeout="soon"))
        )
    )
    before = db_state(application)
    with pytest.raises(CommandError) as caught:
        call_command("load_app_config", str(path))
    message = str(caught.value)
    assert f"{path}: 2 errors, nothing was changed:" in message
    assert "  build.timeout: str 'soon' is not a duration" in message
    assert "  services[0].phase: must be a positive whole number, not 0" in message
    assert db_state(application) == before

    with pytest.raises(CommandError, match="load with --create"):
        call_command(
            "load_app_config",
            str(
                _write(tmp_path, example_text().replace("application: demo-shop", "application: x"))
            ),
        )
    with pytest.raises(CommandError, match="cannot read"):
        call_command("load_app_config", str(tmp_path / "missing.yml"))


def _write(tmp_path, text):
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def test_the_command_exits_non_zero_with_the_errors(tmp_path):
    path = _write(tmp_path, changed(set_in(["services", 0, "process_type"], "wrker")))
    result = subprocess.run(
        [sys.executable, "manage.py", "load_app_config", str(path)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "services[0].process_type: 'wrker' is not one of" in result.stderr
