"""Nothing stranded on the embedded default: the two reproductions of issue 9, on `make run`.

The same `make run` server as tests/test_embedded_default.py (SQLite, the folder broker, a
real Celery worker with its prefork pool, beat, moto), started once for both, with a shorter
safety net so a lost step comes back in seconds (tests/conftest.py: QUICK_SAFETY_NET).

* A burst: 60 merge-only deploys queued at once through the API, by several clients, while
  another polls the queues twice a second. On kombu's filesystem transport this crashed the
  worker ("Unrecoverable error: JSONDecodeError"): here every deploy merges and the worker
  never dies. One round in `make test`; five under FC_SOAK=1 (`make soak`).
* The OOM killer's way: SIGKILL of the worker's pool processes while idle, mid-build and
  mid-rollout. On the filesystem transport the worker then took messages it never ran; here
  the same worker keeps consuming, the killed step is run again, and nothing twice (each ECS
  service gets exactly one new revision).

Each test writes its figures to build/reliability/ for docs/reliability.md.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from deploys.states import FINAL_STATES, State
from tests.conftest import QUICK_SAFETY_NET
from tests.embedded_server import (
    BASE_DIR,
    EmbeddedServer,
    child_named,
    children_of,
    embedded_environment,
    manage,
    said,
)
from tests.test_embedded_default import (
    DEMO_PHASES,
    DEMO_REPOSITORY,
    ecs_rollouts,
    legacy_rollouts,
    login,
    queue_deploy,
)
from tests.test_embedded_supervisor import push_branch
from tests.waiting import wait_until

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="the pipeline needs git on PATH"),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

BURST_APPS = 3
BURST_BRANCHES = 20  # per application: 60 deploys in all
BURST_CLIENTS = 8  # concurrent API clients
ROUNDS = 5 if os.environ.get("FC_SOAK") == "1" else 1
WAIT = 240.0
FIGURES = BASE_DIR / "build" / "reliability"


@pytest.fixture
def embedded(embedded_default):
    """The embedded default, shared with tests/test_embedded_default.py (tests/conftest.py)."""
    return embedded_default


def record(name: str, figures: dict) -> None:
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


def git(*args, cwd) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=cwd, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def remote_with_branches(folder: Path, slug: str, count: int, round_number: int) -> Path:
    """A bare remote whose `count` branches each add a file of their own to main."""
    remote = folder / f"{slug}.git"
    work = folder / f"{slug}-work-{round_number}"
    if not remote.exists():
        git("init", "-q", "--bare", "-b", "main", str(remote), cwd=folder)
        git("init", "-q", "-b", "main", str(work), cwd=folder)
        (work / "README").write_text(f"{slug}\n")
        git("add", "README", cwd=work)
        git("commit", "-q", "-m", "start", cwd=work)
        git("remote", "add", "origin", str(remote), cwd=work)
    else:
        git("clone", "-q", str(remote), str(work), cwd=folder)
    for n in range(count):
        branch = f"burst/{round_number}-{n}"
        git("checkout", "-q", "-b", branch, "main", cwd=work)
        (work / f"{round_number}-{n}.txt").write_text(f"{branch}\n")
        git("add", ".", cwd=work)
        git("commit", "-q", "-m", branch, cwd=work)
    git("push", "-q", "origin", "--all", cwd=work)
    return remote


def add_fast_application(server: EmbeddedServer, slug: str, remote: Path) -> None:
    """An application whose build passes at once, so the burst measures the broker."""
    code = (
        "from deploys.models import Application; "
        f"Application.objects.update_or_create(slug={slug!r}, defaults=dict(name={slug!r}, "
        f"git_remote_url={str(remote)!r}, default_branch='main', build_command='true', "
        "build_timeout_seconds=60))"
    )
    manage({**embedded_environment(server.var_dir), **QUICK_SAFETY_NET}, "shell", "-c", code)


def worker_and_pool(server: EmbeddedServer) -> tuple[int, dict[int, str]]:
    worker = child_named(server, "celery -A fatcontroller worker")
    pool = wait_until(lambda: children_of(worker), 60, lambda: server.explain("the pool"))
    return worker, pool


def kill_pool(server: EmbeddedServer) -> tuple[int, list[int]]:
    """SIGKILL every pool process of the worker, as the OOM killer would; the worker lives."""
    worker, pool = worker_and_pool(server)
    for pid in pool:
        os.kill(pid, signal.SIGKILL)
    return worker, list(pool)


def deploy_of(session, server, deploy_id: int) -> dict:
    response = session.get(f"{server.url}/api/deploys/{deploy_id}/", timeout=10)
    assert response.status_code == 200, server.explain(f"GET deploy {deploy_id}")
    return response.json()


def wait_final(session, server, deploy_id: int, timeout: float = WAIT) -> dict:
    def final():
        deploy = deploy_of(session, server, deploy_id)
        return deploy if deploy["state"] in FINAL_STATES else None

    return wait_until(
        final, timeout, lambda: server.explain(f"deploy {deploy_id} to end"), interval=0.2
    )


def timeline(deploy: dict) -> str:
    return "\n".join(str(event.get("message", event)) for event in deploy["events"])


def task_definition_counts(server: EmbeddedServer) -> dict[str, int]:
    """How many revisions each demo service's family has in the simulated AWS."""
    import boto3

    from devtools.management.commands.runmoto import CREDENTIALS, REGION, endpoint_for
    from tests.embedded_server import processes

    moto = child_named(server, "manage.py runmoto")
    port = int(processes()[moto][1].split("--port")[1].split()[0])
    ecs = boto3.client("ecs", region_name=REGION, endpoint_url=endpoint_for(port), **CREDENTIALS)
    return {
        name: len(ecs.list_task_definitions(familyPrefix=name)["taskDefinitionArns"])
        for name in DEMO_PHASES
    }


# ------------------------------------------------------------------------------- burst


def test_sixty_deploys_queued_at_once_while_polled_all_merge(embedded, tmp_path):
    server = embedded
    session = login(server)
    worker_before = child_named(server, "celery -A fatcontroller worker")
    slugs = [f"burst-{n}" for n in range(BURST_APPS)]
    rounds = [burst_round(server, session, slugs, n, tmp_path) for n in range(ROUNDS)]

    # The same worker all along: it never crashed, and nothing needed a restart.
    assert child_named(server, "celery -A fatcontroller worker") == worker_before
    assert not said(server, "Unrecoverable error"), server.explain("the worker crashed")
    assert not said(server, "worker exited"), server.explain("the worker died")
    record(
        "burst",
        {
            "server": "embedded default (gunicorn 2 x 8, SQLite, folder broker, 1 worker x 2)",
            "clients": BURST_CLIENTS,
            "poll_interval_s": 0.5,
            "rounds": rounds,
            "deploys_queued": sum(r["deploys"] for r in rounds),
            "stranded": 0,
            "lost": 0,
        },
    )


def burst_round(server, session, slugs, round_number: int, tmp_path) -> dict:
    """Queue BURST_BRANCHES branches of each application at once, polled; all must merge."""
    branches = []
    for slug in slugs:
        remote = remote_with_branches(tmp_path, slug, BURST_BRANCHES, round_number)
        add_fast_application(server, slug, remote)
        branches += [(slug, f"burst/{round_number}-{n}") for n in range(BURST_BRANCHES)]
    poller = QueuePoller(server, session, slugs)
    started = time.monotonic()
    with poller:
        with ThreadPoolExecutor(BURST_CLIENTS) as clients:
            ids = list(clients.map(lambda a: queue_deploy_of(session, server, *a), branches))
        finals = [wait_final(session, server, deploy_id) for deploy_id in ids]
    took = time.monotonic() - started

    not_merged = [(d["id"], d["branch"], d["state"]) for d in finals if d["state"] != State.MERGED]
    assert not not_merged, server.explain(f"round {round_number}: not merged: {not_merged}")
    assert poller.errors == 0 and poller.answers > 0, (poller.answers, poller.errors)
    return {"deploys": len(ids), "seconds": round(took, 1), "polls": poller.answers}


class QueuePoller:
    """A client asking for every application's queue twice a second, in a thread."""

    def __init__(self, server, session, slugs):
        self.server, self.slugs = server, slugs
        self.client = requests.Session()
        self.client.cookies.update(session.cookies)
        self.answers = self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self._stop.wait(0.5):
            for slug in self.slugs:
                url = f"{self.server.url}/api/applications/{slug}/queue/"
                if self.client.get(url, timeout=10).status_code == 200:
                    self.answers += 1
                else:
                    self.errors += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(15)


# ------------------------------------------------------------------------- pool kills


def test_a_worker_whose_pool_was_killed_while_idle_keeps_consuming(embedded, tmp_path):
    server = embedded
    session = login(server)
    remote = remote_with_branches(tmp_path, "idle-kill", 1, 0)
    add_fast_application(server, "idle-kill", remote)
    worker, pool = kill_pool(server)
    wait_until(
        lambda: set(children_of(worker)) - set(pool),
        60,
        lambda: server.explain("new pool processes"),
    )

    started = time.monotonic()
    deploy_id = queue_deploy_of(session, server, "idle-kill", "burst/0-0")
    deploy = wait_final(session, server, deploy_id)
    assert deploy["state"] == State.MERGED, timeline(deploy)
    assert child_named(server, "celery -A fatcontroller worker") == worker  # the same worker
    record(
        "pool-kill-idle",
        {"killed": len(pool), "queued_to_merged_s": round(time.monotonic() - started, 1)},
    )


def test_a_build_whose_pool_process_was_killed_is_built_again_and_merges(embedded):
    server = embedded
    session = login(server)
    branch = push_branch(server, "feature/killed-mid-build")
    deploy_id = queue_deploy(session, server, branch, mode="merge_only")

    def building():
        deploy = deploy_of(session, server, deploy_id)
        builds = deploy["builds"]
        return deploy["state"] == State.BUILDING and builds and builds[-1]["status"] == "running"

    wait_until(building, WAIT, lambda: server.explain("the build to run"), interval=0.05)
    worker, pool = kill_pool(server)
    killed_at = time.monotonic()

    deploy = wait_final(session, server, deploy_id)
    recovered = time.monotonic() - killed_at
    assert deploy["state"] == State.MERGED, timeline(deploy)
    assert "its worker died mid-build; starting it again" in timeline(deploy)
    assert child_named(server, "celery -A fatcontroller worker") == worker
    record("pool-kill-mid-build", {"killed": len(pool), "kill_to_merged_s": round(recovered, 1)})


def test_a_rollout_whose_pool_process_was_killed_finishes_and_updates_each_service_once(embedded):
    server = embedded
    session = login(server)
    branch = push_branch(server, "feature/killed-mid-rollout")
    revisions_before = task_definition_counts(server)
    deploy_id = queue_deploy(session, server, branch, mode="deploy")
    wait_until(
        lambda: deploy_of(session, server, deploy_id)["state"] == State.DEPLOYING,
        WAIT,
        lambda: server.explain("the rollout to start"),
        interval=0.05,
    )
    worker, pool = kill_pool(server)
    killed_at = time.monotonic()

    deploy = wait_final(session, server, deploy_id)
    recovered = time.monotonic() - killed_at
    assert deploy["state"] == State.SUCCEEDED, timeline(deploy)
    image = f"{DEMO_REPOSITORY}:{deploy['candidate_sha'][:12]}"
    rollouts = ecs_rollouts(deploy)
    assert {name: (r["status"], r["image"]) for name, r in rollouts.items()} == {
        name: ("done", image) for name in DEMO_PHASES
    }, deploy["rollouts"]
    assert {r["status"] for r in legacy_rollouts(deploy).values()} == {"done"}, deploy
    # One new revision per service, never two: nothing was started twice.
    assert task_definition_counts(server) == {n: c + 1 for n, c in revisions_before.items()}
    assert child_named(server, "celery -A fatcontroller worker") == worker
    record(
        "pool-kill-mid-rollout", {"killed": len(pool), "kill_to_succeeded_s": round(recovered, 1)}
    )


def queue_deploy_of(session, server, slug: str, branch: str) -> int:
    """Queue a merge-only deploy through the API, in a session of its own (thread-safe)."""
    client = requests.Session()
    client.cookies.update(session.cookies)
    response = client.post(
        f"{server.url}/api/deploys/",
        json={"application": slug, "branch": branch, "mode": "merge_only"},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": f"{server.url}/"},
        timeout=30,
    )
    assert response.status_code == 201, (branch, response.status_code, response.text[:500])
    return response.json()["id"]
