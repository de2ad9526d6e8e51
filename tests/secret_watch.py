"""A pytest plugin that keeps what the app wrote during the suite and looks in it for the
secrets the tests handed it (README, "Production settings"); the last test of the run,
tests/test_no_secrets_written.py, fails if one was found.

The secrets: while each test runs, every environment variable and Django setting whose name
says it is one (…TOKEN…, …SECRET…, …PASSWORD…, FC_WEBHOOK_URL_…) with a value long enough to
be telling. What the app wrote: every log record any logger handled (message, extras,
traceback), every answer a Django handler gave in this process (the test client, the live
server; streamed answers are not kept), every row written to a database (the parameters of
each INSERT and UPDATE, bulk ones too), what each test printed (commands' output), and at the
end the files under FC_VAR_DIR and the tests' temporary folders, where servers and workers
run in their own processes keep their logs and databases.

Each test's writes are looked through when it ends, against every secret known by then, and
let go: the suite's writes are never held all at once.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|WEBHOOK_URL")
NOT_SECRETS = {"FC_TOKEN_DAYS"}
SHORTEST = 10  # shorter values ("sim", "testing") would be found in anything
LARGEST_FILE = 20 * 1024 * 1024
SKIPPED_FOLDERS = {".git", "staticfiles", "node_modules", "__pycache__"}
# Source, not output: tests that copy the project (the import contract's) copy its stand-ins'
# test tokens too.
SKIPPED_SUFFIXES = (".py", ".pyc")
# Loggers of test tools, which never run in production: `responses` logs each URL it fakes.
TEST_TOOL_LOGGERS = ("responses",)
FINAL_TEST = "test_no_secrets_written.py"


@dataclass
class Finding:
    secret_name: str
    test: str
    where: str

    def __str__(self) -> str:
        return f"{self.secret_name} in {self.where} (written during {self.test})"


@dataclass
class Watch:
    secrets: dict[str, str] = field(default_factory=dict)  # value -> its name
    findings: list[Finding] = field(default_factory=list)
    writes: list[tuple[str, str]] = field(default_factory=list)  # (where, text)
    test: str = "collection"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, where: str, text: str) -> None:
        with self.lock:
            self.writes.append((where, text))

    def learn(self) -> None:
        """The secrets the environment and the settings hold now."""
        from django.conf import settings

        found = dict(os.environ)
        if settings.configured:
            found.update(
                (name, getattr(settings, name, None))
                for name in dir(settings._wrapped)
                if name.isupper()
            )
        for name, value in found.items():
            if (
                isinstance(value, str)
                and len(value) >= SHORTEST
                and SECRET_NAME.search(name)
                and name not in NOT_SECRETS
            ):
                self.secrets.setdefault(value, name)

    def look(self) -> list[Finding]:
        """Look through the writes kept since the last look, and let them go."""
        with self.lock:
            writes, self.writes = self.writes, []
        new = [
            Finding(name, self.test, where)
            for where, text in writes
            for value, name in self.secrets.items()
            if value in text
        ]
        self.findings.extend(new)
        return new

    def look_in_files(self, *roots: Path) -> None:
        needles = {value.encode(): name for value, name in self.secrets.items()}
        for root in roots:
            for folder, subfolders, files in os.walk(root):
                subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS]
                for name in files:
                    if name.endswith(SKIPPED_SUFFIXES):
                        continue
                    path = Path(folder, name)
                    try:
                        if not path.is_file() or path.stat().st_size > LARGEST_FILE:
                            continue
                        data = path.read_bytes()
                    except OSError:
                        continue  # gone, or a socket
                    self.findings.extend(
                        Finding(secret_name, "the run", str(path))
                        for value, secret_name in needles.items()
                        if value in data
                    )


WATCH = Watch()


def _record_text(record: logging.LogRecord) -> str:
    text = f"{record.getMessage()} {record.__dict__!r}"
    if record.exc_info:
        text += logging.Formatter().formatException(record.exc_info)
    return text


def _watch_logs() -> None:
    handle = logging.Logger.callHandlers

    def call_handlers(logger, record):
        if record.name.split(".")[0] in TEST_TOOL_LOGGERS:
            return handle(logger, record)
        try:
            WATCH.saw(f"a log record of {record.name}", _record_text(record))
        except Exception:  # noqa: S110 - a record that cannot be shown is not kept either
            pass
        return handle(logger, record)

    logging.Logger.callHandlers = call_handlers


def _watch_answers() -> None:
    from django.core.handlers.base import BaseHandler

    get_response = BaseHandler.get_response

    def watched(handler, request):
        response = get_response(handler, request)
        if not getattr(response, "streaming", False):
            body = response.content.decode("utf-8", "replace")
            where = f"the answer to {request.method} {request.path}"
            WATCH.saw(where, f"{response.items()!r}{body}")
        return response

    BaseHandler.get_response = watched


def _watch_rows() -> None:
    from django.db.backends.signals import connection_created

    def watched(execute, sql, params, many, context):
        if sql.lstrip()[:6].upper() in ("INSERT", "UPDATE"):
            WATCH.saw(f"a row written by {sql.split('(', 1)[0][:80]}", repr(params))
        return execute(sql, params, many, context)

    def on_connect(sender, connection, **kwargs):
        if watched not in connection.execute_wrappers:
            connection.execute_wrappers.append(watched)

    connection_created.connect(on_connect, weak=False)


def pytest_configure(config):
    _watch_logs()
    _watch_answers()
    _watch_rows()


def pytest_collection_modifyitems(session, config, items):
    # The look through the files goes last, when everything else has written its files.
    items.sort(key=lambda item: item.path.name == FINAL_TEST)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    WATCH.test = item.nodeid
    WATCH.learn()
    try:
        return (yield)
    finally:
        WATCH.learn()  # what the test itself set


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    WATCH.test = item.nodeid
    try:
        return (yield)
    finally:
        WATCH.look()


def pytest_runtest_logreport(report):
    for title, text in report.sections:
        if title.startswith("Captured std"):
            WATCH.saw(f"{title.lower()} of the test", text)
