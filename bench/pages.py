"""The pages under fifty viewers: the embedded default and the production shape, at 1, 10
and 50 applications, each with 100,000 deploys (bench/pages_seed.py).

The shapes (SHAPES):
- embedded: the web server `make run` starts (devtools/.../runembedded.py: gunicorn, 2
  processes of 8 threads) on SQLite, as the embedded default runs;
- production: docker-compose.yml's web command (gunicorn, 4 sync workers) on PostgreSQL
  (BENCH_POSTGRES_URL, the local server by default: a database fc_bench_pages is made for
  each run and dropped after it). Without a PostgreSQL that answers, it is skipped, saying so.

The figures are the `Server-Timing: app;dur=` each answer carries (fatcontroller/middleware.py:
the server's own time, from the first middleware in to the response out), and beside each the
client's latency (connect to last byte), which adds what the server's queue and socket cost.

Each shape and number of applications runs in a child process (`python -m bench.pages OUT
SHAPE APPLICATIONS`) on a database of its own. Before the load, one client asks for each page
3 times to warm up, then up to 20 times in a row (5 s at most): "alone", the cost of one
request without contention. Then 50 viewers, one session each, in two rounds of 15 s
(bench/pages_load.py), while a deploy somewhere moves on every second (a note on its
timeline, as a rollout's progress is):
- pages: each viewer reloads the dashboard and a finished deploy's page every 2 s, as two tabs
  would: the heavier case, every answer rendered in full;
- live: each viewer has the dashboard and a running deploy's page open, and their scripts poll
  the live fragments every 2 s as static/js/live.js does (If-None-Match, and the dashboard's
  ?since=): "unchanged" is a 304 from one query, "full" an answer with what changed.
The rate asked (50 viewers x 2 tabs / 2 s = 50 a second) is printed beside the rate served;
a round in which the server could not keep up (errors, answers late for the next turn, a rate
served under the rate asked) says so in the output and in the figures ("kept_up": false).
"queries" is what one request makes, session and user included, through the test client.

BENCH_PAGES_SHAPES (embedded,production) and BENCH_PAGES_APPLICATIONS (1,10,50) choose a part.
"""

import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from bench import pages_load

ROOT = Path(__file__).resolve().parent.parent

APPLICATION_COUNTS = (1, 10, 50)
VIEWERS = 50
PERIOD_SECONDS = 2.0  # each tab asks this often
DURATION_SECONDS = 15.0
CHANGE_EVERY_SECONDS = 1.0  # a deploy moves on somewhere
ALONE_REQUESTS = 20
ALONE_SECONDS = 5.0  # fewer than ALONE_REQUESTS if a page is that slow
WARM_UP_REQUESTS = 3
ALONE = {"warm_up": WARM_UP_REQUESTS, "requests": ALONE_REQUESTS, "seconds": ALONE_SECONDS}
BENCH_DATABASE = "fc_bench_pages"
DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"


@dataclass(frozen=True)
class Shape:
    key: str
    conditions: str  # in every figure's name


SHAPES = {
    "embedded": Shape("embedded", "embedded default: gunicorn 2x8 threads, SQLite"),
    "production": Shape("production", "production shape: gunicorn 4 workers, PostgreSQL"),
}


def _chosen(variable: str, default: tuple) -> list[str]:
    value = os.environ.get(variable, "")
    return [part.strip() for part in value.split(",") if part.strip()] or [str(d) for d in default]


def run(var_dir: Path) -> dict[str, dict]:
    figures: dict[str, dict] = {}
    counts = [int(n) for n in _chosen("BENCH_PAGES_APPLICATIONS", APPLICATION_COUNTS)]
    for key in _chosen("BENCH_PAGES_SHAPES", tuple(SHAPES)):
        if key not in SHAPES:
            raise SystemExit(f"bench: no page shape {key}; there are {', '.join(SHAPES)}")
        for count in counts:
            env = _environment(SHAPES[key])
            if env is None:
                break
            try:
                figures.update(_child_run(var_dir, key, count, env))
            finally:
                if key == "production":
                    _drop_database()
    return figures


def _environment(shape: Shape) -> dict[str, str] | None:
    env = dict(os.environ)
    if shape.key == "embedded":
        return {**env, "FC_EMBEDDED": "1"}
    for name in ("FC_EMBEDDED", "REDIS_URL"):
        env.pop(name, None)
    try:
        url = _make_database()
    except Exception as exc:  # any trouble reaching it: the figure is skipped, not the bench
        where = _postgres_url().rsplit("@", 1)[-1]
        print(f"pages: the production shape is skipped: no PostgreSQL at {where} ({exc})")
        return None
    return {**env, "DATABASE_URL": url, "SECRET_KEY": "bench-only-not-a-secret"}


def _postgres_url() -> str:
    return os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _admin(statement: str) -> None:
    import psycopg2

    connection = psycopg2.connect(_postgres_url(), connect_timeout=5)
    try:
        connection.autocommit = True  # CREATE DATABASE runs outside a transaction
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def _make_database() -> str:
    _drop_database()
    _admin(f"CREATE DATABASE {BENCH_DATABASE}")
    parts = urlsplit(_postgres_url())
    return urlunsplit(parts._replace(path=f"/{BENCH_DATABASE}"))


def _drop_database() -> None:
    _admin(f"DROP DATABASE IF EXISTS {BENCH_DATABASE} WITH (FORCE)")


def _child_run(var_dir: Path, key: str, count: int, env: dict[str, str]) -> dict[str, dict]:
    work = var_dir / "pages" / f"{key}-{count}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "figures.json"
    child = subprocess.run(
        [sys.executable, "-m", "bench.pages", str(out), key, str(count)],
        cwd=ROOT,
        env={**env, "FC_VAR_DIR": str(work)},
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"bench: the pages figure failed (exit {child.returncode}); see above")
    return json.loads(out.read_text())


# The child process: setup, server, viewers.


def _child(out: Path, shape: Shape, count: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fatcontroller.settings")
    import django

    django.setup()
    import logging

    from django.core.management import call_command

    from bench.pages_seed import DEPLOYS, seed

    # A line for each of the viewers' sessions made: not what the bench is telling.
    logging.getLogger("axes").setLevel(logging.WARNING)

    work = Path(os.environ["FC_VAR_DIR"])
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    seeded = seed(count)
    where = f"{shape.key}, {count} application{'s' if count > 1 else ''}"
    took = time.monotonic() - started
    print(f"pages: {where}: {DEPLOYS:,} deploys written in {took:.1f} s", flush=True)

    pages, live = _tabs(seeded)
    queries = {tab.name: _queries(tab.path, seeded["people"][0]) for tab in pages + live}
    cookies = [_session_cookie(person) for person in seeded["people"][:VIEWERS]]

    port = _free_port()
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        _server_argv(shape, port), cwd=ROOT, env=os.environ, stdout=log, stderr=subprocess.STDOUT
    )
    moving = _DeploysMovingOn(seeded["holders"])
    try:
        _wait_for_server(server, port)
        alone = {
            tab.name: pages_load.alone(port, cookies[0], tab.path, **ALONE) for tab in pages + live
        }
        for tab in live:  # the same, each answered 304: what an unchanged poll costs
            etag = pages_load.get(port, tab.path, cookies[0]).etag
            alone[f"{tab.name} unchanged"] = pages_load.alone(
                port, cookies[0], tab.path, etag=etag, **ALONE
            )
        moving.start()
        rounds = {
            label: pages_load.load(
                port, cookies, tabs, period=PERIOD_SECONDS, duration=DURATION_SECONDS
            )
            for label, tabs in (("pages", pages), ("live", live))
        }
    finally:
        moving.stop()
        server.terminate()
        server.wait(timeout=30)
        log.close()

    figures = {}
    for label, result in rounds.items():
        print(f"pages: {where}, {label}: {_rates(result)}", flush=True)
        for tab_name, tab in result.tabs.items():
            figures.update(_tab_figures(shape, count, tab_name, tab, result, queries, alone))
    out.write_text(json.dumps(figures))


def _rates(result: pages_load.LoadResult) -> str:
    said = (
        f"{result.viewers} viewers x {len(result.tabs)} tabs every {result.period:g} s asked "
        f"{result.asked_per_second:.1f}/s, served {result.served_per_second:.1f}/s "
        f"({result.answered} answers to {result.turns} turns in {result.took:.1f} s; "
        f"{result.late} late, {result.errors} errors)"
    )
    return said + (": kept up" if result.kept_up else ": THE SERVER COULD NOT KEEP UP")


def _tab_figures(shape, count, tab_name, tab, result, queries, alone) -> dict[str, dict]:
    from bench.__main__ import summary

    conditions = f"{count} apps, 100k deploys, {result.viewers} viewers; {shape.conditions}"
    rates = {
        "asked_per_s": round(result.asked_per_second, 1),
        "served_per_s": round(result.served_per_second, 1),
        "kept_up": result.kept_up,
        "late": result.late,
        "unit": "ms" if result.kept_up else "ms; COULD NOT KEEP UP",
    }
    figures = {}
    for kind, label in (("full", "server time"), ("unchanged", "unchanged poll (304)")):
        samples = tab.server[kind]
        if not samples:
            continue
        figure = summary(samples)
        figure.update(rates)
        figure["conditions"] = conditions
        figure["client_latency"] = summary(tab.client[kind])
        by_itself = alone.get(tab_name if kind == "full" else f"{tab_name} unchanged")
        if by_itself:
            figure["breakdown"] = {
                f"alone (one client, {len(by_itself)} in a row)": summary(by_itself)
            }
        if kind == "full":
            figure["queries"] = queries[tab_name]
            figure["bytes_median"] = int(statistics.median(tab.sizes))
        if tab.errors:
            figure["errors"] = {"count": len(tab.errors), "first": tab.errors[:5]}
        figures[f"{tab_name} {label} ({count} apps, {shape.key})"] = figure
    unchanged_alone = alone.get(f"{tab_name} unchanged")
    if unchanged_alone:  # also where the load left no poll unchanged (a row moved each time)
        figure = summary(unchanged_alone)
        figure["conditions"] = f"one client, one after another; {conditions}"
        figures[f"{tab_name} unchanged poll (304), alone ({count} apps, {shape.key})"] = figure
    return figures


def _tabs(seeded) -> tuple[list[pages_load.Tab], list[pages_load.Tab]]:
    """The pages reloaded (the dashboard, a finished deploy's page) and the live fragments
    polled (the dashboard's, a running deploy's: a finished one's page does not poll)."""
    from django.urls import reverse

    Tab = pages_load.Tab
    running = seeded["holders"][0]
    pages = [
        Tab("dashboard", reverse("dashboard")),
        Tab("deploy page", reverse("deploy", args=[seeded["target"].pk])),
    ]
    live = [
        Tab("dashboard fragment", reverse("dashboard-live"), conditional=True, sends_since=True),
        Tab("deploy fragment", reverse("deploy-live", args=[running]), conditional=True),
    ]
    return pages, live


def _server_argv(shape: Shape, port: int) -> list[str]:
    bind = f"127.0.0.1:{port}"
    if shape.key == "embedded":
        from devtools.management.commands.runembedded import PROCESSES

        return [sys.executable, *PROCESSES["web"], bind]
    # docker-compose.yml's, so the figure follows what production runs.
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = list(compose["services"]["web"]["command"])
    if command[0] != "gunicorn" or "--bind" not in command:
        raise SystemExit(f"bench: docker-compose.yml's web command is not gunicorn: {command}")
    command[command.index("--bind") + 1] = bind
    return [sys.executable, "-m", *command]


class _DeploysMovingOn:
    """A note on a running deploy's timeline every CHANGE_EVERY_SECONDS, as a rollout's
    progress is: the live polls see something change now and then, as they would."""

    def __init__(self, holders: list[int]):
        self._holders = holders
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = random.Random(4)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        from django.db import connection

        from deploys.models import Deploy
        from deploys.statemachine import record_event

        n = 0
        while not self._stopped.wait(CHANGE_EVERY_SECONDS):
            n += 1
            deploy = Deploy.objects.get(pk=self._rng.choice(self._holders))
            record_event(deploy, f"phase 1: {n % 4 + 1}/4 tasks running")
        connection.close()


def _queries(path: str, person) -> int:
    """How many queries one request makes, session and user included."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(person)
    client.get(path)  # the first request of a process does one-off work
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    if response.status_code != 200:
        raise SystemExit(f"bench: {path} answered {response.status_code} in the test client")
    return len(captured)


def _session_cookie(person) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(person)
    name = settings.SESSION_COOKIE_NAME
    return f"{name}={client.cookies[name].value}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(server: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        if server.poll() is not None:
            raise SystemExit(
                f"bench: the server stopped (exit {server.returncode}); see server.log"
            )
        try:
            if pages_load.get(port, "/login/", "").status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("bench: the server did not answer in 60 s; see server.log")
        time.sleep(0.2)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(Path(sys.argv[1]), SHAPES[sys.argv[2]], int(sys.argv[3]))
