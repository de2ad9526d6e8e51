"""Dashboard and deploy page server time: 100,000 deploys in the database, 50 viewers polling.

The figures are the `Server-Timing: app;dur=` each answer carries (fatcontroller/middleware.py:
the server's own time, from the first middleware in to the response out), and beside each the
client's latency (connect to last byte), which adds what the server's queue and socket cost.

It runs in a child process (`python -m bench.pages OUT`) on a database of its own under
FC_VAR_DIR/pages, so the dashboard shows exactly this figure's three applications and not the
ones the other figures made, and the other figures never see 100,000 deploys.

Setup, written with bulk_create in batches in one transaction:
- 50 people (no passwords: each viewer's session is made with the test client's force_login
  and its cookie handed to the HTTP client);
- 3 applications; 100,000 deploys over them, newest last, about 6 minutes apart (a year of
  history), mostly final (succeeded, merged, cancelled, merge_conflict, rolled_back, failed,
  abandoned, rollback_failed), each with 1-3 commits; per application one slot holder
  (building, deploying or verifying) and 3 queued;
- the newest 3,000 final deploys with a timeline (5-8 events) and one build with a short log;
- the deploy page's deploy: a finished (succeeded) deploy of the first application, 20
  events, 2 builds (a failed one with a 120 KB log, longer than the page's 64 KB tail, and a
  succeeded one with 40 KB) and 4 service rollouts over 2 phases.

The server is the embedded default's web process, `manage.py runserver --noreload` (threaded:
a thread per connection, one Python process), in a subprocess. Before the load, one client
asks for each URL 3 times to warm up, then up to 20 times in a row (5 s at most): "alone" in
the breakdown, the cost of one request without contention. Then 50 client threads, one per
person, each with its own session, in two rounds of 20 s:
- the pages: each viewer asks for the dashboard every 2 s and the deploy page every 2 s, as
  two tabs would (a thread each), 1 s apart, the viewers' starts spread evenly over the 2 s;
- the live fragments, if deploys/urls.py has any (routes whose name contains "live", given
  the deploy page's deploy or the first application where they take one): the same, each
  fragment every 2 s by every viewer. (live.js polls less often, and not at all on a
  finished deploy's page: this is the heavier case.)
A new connection per request. A tab never has two requests out: an answer later than its
next turn sends the next request at once, and none is started after the 20 s (those out
then are waited for and counted). Every answer must be 200 (204 or 304 for a fragment);
others are counted under "errors" and left out of the figures. "queries" is what one request
makes, session and user included, through the test client.
"""

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from http.client import HTTPConnection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DEPLOYS = 100_000
PEOPLE = 50
APPLICATIONS = (("shop", "Shop"), ("payments", "Payments"), ("search", "Search"))
HOLDER_STATES = ("deploying", "building", "verifying")  # one per application, in order
QUEUED_PER_APPLICATION = 3
WITH_TIMELINE = 3_000  # the newest final deploys with events and a build
BATCH = 5_000
SPACING = timedelta(minutes=6)
NOTES = ("hotfix for the checkout", "needs the migration first", "after the freeze")
FINAL_WEIGHTS = {
    "succeeded": 52,
    "merged": 18,
    "cancelled": 8,
    "merge_conflict": 7,
    "rolled_back": 5,
    "failed": 4,
    "abandoned": 4,
    "rollback_failed": 2,
}

VIEWERS = 50
PERIOD_SECONDS = 2.0  # each viewer asks for each page this often
DURATION_SECONDS = 20.0
ALONE_REQUESTS = 20
ALONE_SECONDS = 5.0  # fewer than ALONE_REQUESTS if a page is that slow
WARM_UP_REQUESTS = 3
LIVE_OK = (200, 204, 304)
TIMING = re.compile(r"\bapp;dur=([0-9.]+)")


def run(var_dir: Path) -> dict[str, dict]:
    work = var_dir / "pages"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = work / "figures.json"
    child = subprocess.run(
        [sys.executable, "-m", "bench.pages", str(out)],
        cwd=ROOT,
        env={**os.environ, "FC_VAR_DIR": str(work)},
        check=False,
    )
    if child.returncode != 0:
        raise SystemExit(f"bench: the pages figure failed (exit {child.returncode}); see above")
    return json.loads(out.read_text())


# The child process: setup, server, viewers.


def _child(out: Path) -> None:
    os.environ.setdefault("FC_EMBEDDED", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fatcontroller.settings")
    import django

    django.setup()
    from django.core.management import call_command

    work = Path(os.environ["FC_VAR_DIR"])
    call_command("migrate", verbosity=0)
    started = time.monotonic()
    seeded = seed()
    print(f"pages: {DEPLOYS:,} deploys written in {time.monotonic() - started:.1f} s", flush=True)

    pages, live = _targets(seeded)
    targets = {**pages, **live}
    queries = {name: _queries(path, seeded["people"][0]) for name, path in targets.items()}
    cookies = [_session_cookie(person) for person in seeded["people"][:VIEWERS]]

    port = _free_port()
    log = (work / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=os.environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_server(server, port)
        alone = {name: _alone(port, cookies[0], path) for name, path in targets.items()}
        phases = [_load(port, cookies, group) for group in (pages, live) if group]
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()

    from bench.__main__ import summary

    figures = {}
    for (samples, errors, took), group in zip(phases, (pages, live), strict=False):
        answered = sum(len(v["server"]) for v in samples.values())
        load = (
            f"{len(cookies)} viewers, each asking for {' and '.join(group.values())} every "
            f"{PERIOD_SECONDS:g} s for {DURATION_SECONDS:g} s; {answered} answers in "
            f"{took:.1f} s ({answered / took:.0f}/s)"
        )
        for name, path in group.items():
            if not samples[name]["server"]:
                raise SystemExit(f"bench: no usable answer from {path}: {errors[name][:5]}")
            server_figure = summary(samples[name]["server"])
            server_figure["path"] = path
            server_figure["queries"] = queries[name]
            server_figure["load"] = load
            server_figure["breakdown"] = {
                f"alone (one client, {len(alone[name])} in a row)": summary(alone[name])
            }
            if errors[name]:
                server_figure["errors"] = {"count": len(errors[name]), "first": errors[name][:5]}
            figures[f"{name} server time (100k deploys, 50 viewers)"] = server_figure
            figures[f"{name} client latency (100k deploys, 50 viewers)"] = summary(
                samples[name]["client"]
            )
    out.write_text(json.dumps(figures))


def seed() -> dict:
    """The database described in the module's docstring; returns what the pages need."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.db.models import F
    from django.db.models.functions import Coalesce
    from django.utils import timezone

    from builds.models import Build
    from clusters.models import Cluster, Placement, ProcessType, Service
    from deploys.models import Application, Deploy, DeployEvent, ServiceRollout

    rng = random.Random(20261127)  # the same data every run
    now = timezone.now().replace(microsecond=0)
    User = get_user_model()
    with transaction.atomic():
        names = [f"{first}.{last}" for first, last in _people(rng)]
        User.objects.bulk_create(
            User(username=name, email=f"{name}@example.com", password=make_password(None))
            for name in names
        )
        people = list(User.objects.order_by("id"))
        # Some people deploy much more than others.
        weights = [1 / (n + 1) ** 0.7 for n in range(len(people))]
        apps = [
            Application.objects.create(
                slug=slug,
                name=name,
                git_remote_url=f"git@example.com:acme/{slug}.git",
                image_repository=f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/{slug}",
            )
            for slug, name in APPLICATIONS
        ]

        active = len(apps) * (1 + QUEUED_PER_APPLICATION)
        finals = DEPLOYS - active
        target_index = finals - 40  # a recent finished deploy
        states, state_weights = zip(*FINAL_WEIGHTS.items(), strict=True)
        batch = []
        for n in range(DEPLOYS):
            if n < finals:
                finished = now - SPACING * (finals - n) + timedelta(seconds=rng.randint(0, 300))
                state = rng.choices(states, state_weights)[0]
                app = rng.choice(apps)
                deploy = _final_deploy(rng, app, state, finished, people, weights)
                if n == target_index:
                    _make_target(deploy, apps[0], people, rng)
            else:
                k = n - finals
                app, place = apps[k % len(apps)], k // len(apps)
                deploy = Deploy(
                    application=app,
                    branch=f"feature/{app.slug}-next-{place}",
                    mode="deploy",
                    requester=rng.choices(people, weights)[0],
                    state=HOLDER_STATES[k % len(apps)] if place == 0 else "queued",
                    started_at=now - timedelta(minutes=4) if place == 0 else None,
                    commits=_commits(rng, people),
                )
            batch.append(deploy)
            if len(batch) == BATCH:
                Deploy.objects.bulk_create(batch)
                batch = []
        Deploy.objects.bulk_create(batch)
        # created_at and updated_at are set to now by bulk_create: give the history its times.
        Deploy.objects.filter(finished_at__isnull=False).update(
            created_at=Coalesce("started_at", "finished_at"), updated_at=F("finished_at")
        )
        ids = list(Deploy.objects.order_by("id").values_list("id", flat=True))
        target = Deploy.objects.get(pk=ids[target_index])

        timeline = list(
            Deploy.objects.filter(finished_at__isnull=False)
            .exclude(pk=target.pk)
            .order_by("-id")
            .values_list("id", "state", "requester_id")[:WITH_TIMELINE]
        )
        events, builds = [], []
        for deploy_id, state, requester_id in timeline:
            events.extend(_events(deploy_id, state, requester_id))
            builds.append(
                Build(
                    deploy_id=deploy_id,
                    attempt=1,
                    status="failed" if state == "failed" else "succeeded",
                    image_tag=f"deploy-{deploy_id}-1",
                    summary="make test: exit 0",
                    log=_log(rng, 2_000),
                )
            )
        DeployEvent.objects.bulk_create(events, batch_size=BATCH)
        Build.objects.bulk_create(builds, batch_size=1_000)

        _target_timeline(target, people, rng)
        cluster = Cluster.objects.create(name="production", region="eu-west-1")
        for phase, (name, kind) in enumerate(
            (("web", ProcessType.WEB), ("worker", ProcessType.WORKER)) * 2
        ):
            service = Service.objects.create(
                application=apps[0],
                name=f"{apps[0].slug}-{name}{'-eu' if phase >= 2 else ''}",
                process_type=kind,
                phase=1 + phase // 2,
            )
            placement = Placement.objects.create(
                service=service,
                cluster=cluster,
                ecs_service_name=service.name,
                container_name="app",
            )
            family = f"arn:aws:ecs:eu-west-1:123456789012:task-definition/{service.name}"
            ServiceRollout.objects.create(
                deploy=target,
                placement=placement,
                phase=service.phase,
                status="done",
                revision_before=f"{family}:{411 + phase}",
                revision_made=f"{family}:{412 + phase}",
                image=f"{apps[0].image_repository}:deploy-{target.pk}-2",
                start_handle=f"ecs-svc/{rng.getrandbits(60)}",
                running_count=4,
                desired_count=4,
                message="steady",
                started_at=target.finished_at - timedelta(minutes=8),
                finished_at=target.finished_at - timedelta(minutes=4),
            )
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"people": people, "applications": apps, "target": target}


def _final_deploy(rng, app, state, finished, people, weights):
    from deploys.models import Deploy

    if state == "merged":
        mode = "merge_only"
    elif state == "succeeded" and rng.random() < 0.02:
        mode = "restore"
    elif state in ("rolled_back", "rollback_failed") or rng.random() < 0.8:
        mode = "deploy"
    else:
        mode = "merge_only"
    never_started = state == "cancelled" and rng.random() < 0.6
    started = finished - timedelta(seconds=rng.randint(120, 1800))
    return Deploy(
        application=app,
        branch=_branch(rng),
        mode=mode,
        requester=rng.choices(people, weights)[0],
        note=rng.choice(NOTES) if rng.random() < 0.1 else "",
        state=state,
        head_sha="" if never_started else f"{rng.getrandbits(160):040x}",
        candidate_sha="" if never_started or mode == "restore" else f"{rng.getrandbits(160):040x}",
        commits=[] if never_started else _commits(rng, people),
        started_at=None if never_started else started,
        finished_at=finished,
    )


def _make_target(deploy, app, people, rng) -> None:
    deploy.application = app
    deploy.branch = "feature/checkout-address-lookup"
    deploy.mode = "deploy"
    deploy.state = "succeeded"
    deploy.requester = people[1]
    deploy.note = "address lookup behind the flag; retried after a flaky test"
    deploy.head_sha = f"{rng.getrandbits(160):040x}"
    deploy.candidate_sha = f"{rng.getrandbits(160):040x}"
    deploy.commits = _commits(rng, people, count=6)
    deploy.started_at = deploy.finished_at - timedelta(minutes=40)


def _target_timeline(target, people, rng) -> None:
    """20 events, 2 builds (the first failed, retried by its owner), over 40 minutes."""
    from builds.models import Build
    from deploys.models import DeployEvent

    owner = target.requester
    steps = [
        ("", "queued", owner, "queued feature/checkout-address-lookup (deploy)"),
        ("queued", "merging", None, "took the merge slot"),
        ("merging", "merging", None, "fetched origin: 6 commits ahead of main"),
        ("merging", "building", None, f"candidate {target.candidate_sha[:12]} made"),
        ("building", "building", None, "build 1 started on the local build runner"),
        ("building", "build_failed", None, "build 1 failed: make test: exit 2"),
        ("build_failed", "build_failed", None, "the slot is held for 10 minutes"),
        ("build_failed", "building", owner, "build 2 started (retry)"),
        ("building", "building", None, f"image pushed: deploy-{target.pk}-2"),
        ("building", "deploying", None, "build 2 passed"),
        ("deploying", "deploying", None, "the image is in the repository"),
        ("deploying", "deploying", None, "phase 1: shop-web, shop-worker updating"),
        ("deploying", "deploying", None, "phase 1: shop-web 4/4 running"),
        ("deploying", "deploying", None, "phase 1: shop-worker 4/4 running"),
        ("deploying", "deploying", None, "phase 2: shop-web-eu, shop-worker-eu updating"),
        ("deploying", "deploying", None, "phase 2: shop-web-eu 4/4 running"),
        ("deploying", "verifying", None, "phase 2 done: soaking for 60 s"),
        ("verifying", "verifying", None, "health checks green for 60 s"),
        ("verifying", "merging_to_default", None, "soak over"),
        ("merging_to_default", "succeeded", None, "main is now " + target.candidate_sha[:12]),
    ]
    events = DeployEvent.objects.bulk_create(
        DeployEvent(deploy=target, from_state=f, to_state=t, actor=a, message=m)
        for f, t, a, m in steps
    )
    for n, event in enumerate(events):
        at = target.started_at + (target.finished_at - target.started_at) * n / len(events)
        DeployEvent.objects.filter(pk=event.pk).update(created_at=at)
    Build.objects.bulk_create(
        [
            Build(
                deploy=target,
                attempt=1,
                status="failed",
                image_tag=f"deploy-{target.pk}-1",
                summary="make test: exit 2",
                log=_log(rng, 120_000, fail=True),
                started_at=target.started_at + timedelta(minutes=2),
                finished_at=target.started_at + timedelta(minutes=12),
            ),
            Build(
                deploy=target,
                attempt=2,
                status="succeeded",
                image_tag=f"deploy-{target.pk}-2",
                summary="make test: exit 0",
                log=_log(rng, 40_000),
                started_at=target.started_at + timedelta(minutes=15),
                finished_at=target.started_at + timedelta(minutes=25),
            ),
        ]
    )


def _events(deploy_id: int, state: str, requester_id: int):
    from deploys.models import DeployEvent

    path = {
        "succeeded": ["merging", "building", "deploying", "verifying", "merging_to_default"],
        "merged": ["merging", "building", "merging_to_default"],
        "rolled_back": ["merging", "building", "deploying", "rolling_back"],
        "rollback_failed": ["merging", "building", "deploying", "rolling_back"],
        "merge_conflict": ["merging"],
        "failed": ["merging", "building"],
        "abandoned": ["merging", "building", "build_failed"],
        "cancelled": [],
    }[state]
    moves = ["queued", *path, state]
    events = [
        DeployEvent(
            deploy_id=deploy_id,
            actor_id=requester_id,
            from_state="",
            to_state="queued",
            message="queued",
        )
    ]
    for before, after in zip(moves, moves[1:], strict=False):
        events.append(
            DeployEvent(deploy_id=deploy_id, from_state=before, to_state=after, message=f"{after}")
        )
        if after == "building":
            events.append(
                DeployEvent(
                    deploy_id=deploy_id,
                    from_state=after,
                    to_state=after,
                    message="build 1 started on the local build runner",
                )
            )
    return events


def _people(rng):
    first = "ada alan barbara claude dennis edsger frances grace guido ken".split()
    last = "lovelace turing liskov shannon ritchie dijkstra allen hopper rossum thompson".split()
    pairs = [(f, n) for f in first for n in last]
    rng.shuffle(pairs)
    return pairs[:PEOPLE]


def _branch(rng) -> str:
    kind = rng.choice(("feature", "feature", "fix", "chore", "hotfix"))
    topic = rng.choice(
        "checkout basket search payments login invoices emails cache images api".split()
    )
    return f"{kind}/{topic}-{rng.randint(1, 9999)}"


def _commits(rng, people, count: int | None = None) -> list[dict]:
    subjects = (
        "Fix the rounding of totals",
        "Add the address lookup",
        "Say why the payment was refused",
        "Cache the search facets",
        "Bump boto3",
        "Test the refund path",
    )
    return [
        {
            "sha": f"{rng.getrandbits(160):040x}",
            "author": rng.choice(people).username,
            "subject": rng.choice(subjects),
        }
        for _ in range(count or rng.randint(1, 3))
    ]


def _log(rng, chars: int, *, fail: bool = False) -> str:
    lines, size, n = [], 0, 0
    while size < chars:
        n += 1
        line = f"tests/test_module_{n // 40:03d}.py::test_case_{n:05d} PASSED [{n % 100:3d}%]"
        lines.append(line)
        size += len(line) + 1
    if fail:
        lines.append("FAILED tests/test_checkout.py::test_address_lookup - TimeoutError")
    return "\n".join(lines) + "\n"


def _targets(seeded) -> tuple[dict[str, str], dict[str, str]]:
    """The pages asked for (the dashboard, the deploy page) and the live fragments."""
    from django.urls import reverse

    from deploys import urls

    target, app = seeded["target"], seeded["applications"][0]
    pages = {"dashboard": reverse("dashboard"), "deploy page": reverse("deploy", args=[target.pk])}
    live = {}
    known = {"pk": target.pk, "deploy_id": target.pk, "id": target.pk, "attempt": 2}
    known.update(slug=app.slug, application=app.slug)
    for pattern in urls.urlpatterns:
        name = getattr(pattern, "name", None) or ""
        if "live" not in name:
            continue
        wanted = list(pattern.pattern.converters)
        if any(k not in known for k in wanted):
            print(f"pages: not asking for {name}: it takes {wanted}", flush=True)
            continue
        live[f"{name} fragment"] = reverse(name, kwargs={k: known[k] for k in wanted})
    print(f"pages: asking for {', '.join({**pages, **live}.values())}", flush=True)
    return pages, live


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
    if response.status_code not in LIVE_OK:
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
    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise SystemExit(f"bench: runserver stopped (exit {server.returncode}); see server.log")
        try:
            if _get(port, "/login/", "")[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("bench: runserver did not answer in 30 s; see server.log")
        time.sleep(0.2)


def _get(port: int, path: str, cookie: str) -> tuple[int, float | None, float]:
    """(status, the server's own ms from Server-Timing, the client's ms)."""
    started = time.perf_counter()
    connection = HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    client_ms = (time.perf_counter() - started) * 1000
    timing = TIMING.search(response.getheader("Server-Timing") or "")
    return response.status, float(timing.group(1)) if timing else None, client_ms


def _alone(port: int, cookie: str, path: str) -> list[float]:
    """One client, one request after another: the cost of a request without contention."""
    samples = []
    deadline = None
    for n in range(WARM_UP_REQUESTS + ALONE_REQUESTS):
        status, server_ms, _ = _get(port, path, cookie)
        if status not in LIVE_OK or server_ms is None:
            raise SystemExit(f"bench: {path} answered {status} (Server-Timing {server_ms})")
        if n >= WARM_UP_REQUESTS:
            samples.append(server_ms)
            deadline = deadline or time.monotonic() + ALONE_SECONDS
            if time.monotonic() > deadline:
                break
    return samples


def _load(port: int, cookies: list[str], targets: dict[str, str]):
    """Every viewer polls every target in a thread of its own, as a page open in a tab would."""
    names = list(targets)
    samples = {name: {"server": [], "client": []} for name in names}
    errors = {name: [] for name in names}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    stop = start + DURATION_SECONDS

    def poll(viewer: int, target: int) -> None:
        name, cookie = names[target], cookies[viewer]
        # Viewers spread over the period; a viewer's targets spread over it too.
        due = start + PERIOD_SECONDS * (viewer / len(cookies) + target / len(names))
        while True:
            time.sleep(max(0.0, due - time.monotonic()))
            if time.monotonic() >= stop:
                return
            try:
                status, server_ms, client_ms = _get(port, targets[name], cookie)
            except OSError as exc:
                with lock:
                    errors[name].append(f"{type(exc).__name__}: {exc}")
            else:
                with lock:
                    if status in LIVE_OK and server_ms is not None:
                        samples[name]["server"].append(server_ms)
                        samples[name]["client"].append(client_ms)
                    else:
                        errors[name].append(f"HTTP {status}, Server-Timing {server_ms}")
            # Late (the answer took longer than the period): ask again at once, never in a burst.
            due = max(due + PERIOD_SECONDS, time.monotonic())

    threads = [
        threading.Thread(target=poll, args=(viewer, target))
        for viewer in range(len(cookies))
        for target in range(len(names))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, errors, time.monotonic() - start


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _child(Path(sys.argv[1]))
