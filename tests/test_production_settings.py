"""The production environment README documents passes `manage.py check --deploy`, and what
FC_HTTPS turns on works: plain HTTP redirected (but for the probes), secure cookies, HSTS.

The check runs in a subprocess with the README's block as its environment, since settings
are read once per process."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent


def documented_environment() -> dict[str, str]:
    """The "Production settings" block of README.md, as variables (comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Production settings", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    variables = {}
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, value = line.split("=", 1)
            variables[name] = value
    return variables


def check_deploy(variables: dict[str, str]) -> subprocess.CompletedProcess:
    environment = {
        name: value
        for name, value in os.environ.items()
        if name == "FC_VAR_DIR"
        or not name.startswith(("FC_", "SECURE_", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "CSRF_"))
    }
    environment.update(variables)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def production(**changes) -> dict[str, str]:
    variables = documented_environment()
    # The README's "..." stands for a key the operator makes.
    variables["SECRET_KEY"] = secrets.token_urlsafe(50)
    variables.update(changes)
    return {name: value for name, value in variables.items() if value is not None}


def test_the_readme_names_the_settings_that_matter():
    assert {"SECRET_KEY", "ALLOWED_HOSTS", "FC_HTTPS"} <= documented_environment().keys()


def test_the_documented_production_environment_passes_check_deploy():
    result = check_deploy(production())
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("changes", "complaint"),
    [
        ({"FC_HTTPS": "0"}, "security.W004"),  # no HSTS
        ({"SECRET_KEY": "short"}, "security.W009"),
        ({"DEBUG": "1"}, "security.W018"),
    ],
)
def test_check_deploy_fails_without_what_the_readme_sets(changes, complaint):
    result = check_deploy(production(**changes))
    assert result.returncode != 0
    assert complaint in result.stderr


def test_no_secret_key_stops_the_process_at_start():
    result = check_deploy(production(SECRET_KEY=None))
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_a_bad_proxy_header_name_stops_the_process_at_start():
    result = check_deploy(production(FC_PROXY_SSL_HEADER="X-Forwarded-Proto: https"))
    assert result.returncode != 0
    assert "FC_PROXY_SSL_HEADER must be a header name" in result.stderr


@pytest.fixture
def https_settings(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")


@pytest.mark.django_db
def test_plain_http_is_redirected_but_the_probes_are_not(https_settings):
    client = Client()  # a new client, so SecurityMiddleware reads these settings
    login = client.get("/login/")
    assert login.status_code == 301 and login["Location"] == "https://testserver/login/"
    assert client.get("/healthz").status_code in (200, 503)


@pytest.mark.django_db
def test_behind_the_proxy_https_gets_hsts_and_no_redirect(https_settings):
    answer = Client().get("/login/", headers={"x-forwarded-proto": "https"})
    assert answer.status_code == 200
    assert answer["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
