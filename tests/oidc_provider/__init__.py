"""A real OpenID provider for the single sign-on tests, in a process of its own:
django-oauth-toolkit in OIDC mode, as a tiny Django project (settings.py, urls.py, claims.py;
`python -m tests.oidc_provider` sets it up and serves it). Its login form is plain Django
auth; the client it knows is the Fat Controller under test, confidential, with that
server's redirect URI and no consent screen.

Its people (PEOPLE) have addresses in an allowed domain and in another, and groups, which it
gives in a `groups` claim under the `groups` scope.

`running_provider(directory, redirect_uri)` starts it on a free port, waits for its discovery
document (a polled deadline), and stops it by its process group on the way out.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from lib.process_groups import start_in_own_group, stop_group
from tests.embedded_server import BASE_DIR, free_port

CLIENT_ID = "fat-controller-under-test"
PASSWORD = "the provider's test password"
ALLOWED_DOMAIN = "allowed.example"
START_TIMEOUT = 60.0  # migrations and a new RSA key, on a busy two-core machine


@dataclass(frozen=True)
class Person:
    username: str
    email: str
    first_name: str
    last_name: str
    groups: tuple[str, ...]


ANN = Person("ann", f"ann@{ALLOWED_DOMAIN}", "Ann", "Example", ("release-team", "qa"))
ZED = Person("zed", "zed@elsewhere.example", "Zed", "Outsider", ("release-team",))
PEOPLE = (ANN, ZED)


@dataclass
class Provider:
    url: str
    issuer: str
    client_id: str
    client_secret: str
    log_file: Path

    def explain(self, message: str) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            text = "(no log yet)"
        tail = "\n".join(text.splitlines()[-60:])
        return f"{message}\n--- the test provider's log, {self.log_file} ---\n{tail}"


def _wait_until_up(provider: Provider, process: subprocess.Popen) -> None:
    url = f"{provider.issuer}/.well-known/openid-configuration"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(provider.explain(f"it exited with {process.returncode}"))
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(provider.explain(f"GET {url} did not answer 200 in {START_TIMEOUT} s"))


@contextmanager
def running_provider(directory: Path, redirect_uri: str) -> Iterator[Provider]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = Provider(
        url=url,
        issuer=f"{url}/o",
        client_id=CLIENT_ID,
        client_secret=secrets.token_urlsafe(32),
        log_file=directory / "provider.log",
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.oidc_provider.settings",
        "OIDC_PROVIDER_DIR": str(directory),
        "OIDC_PROVIDER_ISSUER": provider.issuer,
        "OIDC_PROVIDER_CLIENT_SECRET": provider.client_secret,
        "PYTHONUNBUFFERED": "1",
    }
    with provider.log_file.open("wb") as log:
        process = start_in_own_group(
            [sys.executable, "-m", "tests.oidc_provider", str(port), redirect_uri],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(provider, process)
        yield provider
    finally:
        stop_group(process, grace=5)
