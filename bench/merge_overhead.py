"""A merge-only deploy's overhead beyond the work: what the deploy costs past a bare script
doing the same merge, build and push.

A real Celery worker process (one, as `make bench` starts it) runs merge-only deploys of an
application whose build command is `true`, one at a time so the slot never queues them.
A deploy is timed from its row's created_at (the API POST) to its finished_at (merged), as
the database has them, so the bench's own polling adds nothing. The bare script runs, in
this process, the git work a merge-only deploy cannot do without, in a clone of its own
made once the way the deploy's is (`git clone --no-checkout`): fetch origin's branches,
check the default branch out, `merge --no-ff` the branch, push the candidate ref, run the
build command in the checkout, push the candidate to the default branch. Each branch has a
twin on a second remote of the same shape, so both merge the same change into a default
branch of the same history. The two alternate (deploy first on even branches, the script
first on odd ones) so machine noise hits both; a first round of each is not counted (the
deploy's clone is made then).

The overhead is a deploy's time less its round's bare script. The per-state figures (from
the deploy's state changes) say where it goes.
"""

import os
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

BRANCHES = 20
SLUG = "bench-merge"
CONDITIONS = "embedded default: SQLite, folder broker, 1 worker"
GIT = [
    "git",
    "-c", "user.name=Bench",
    "-c", "user.email=bench@example.com",
    "-c", "core.hooksPath=/dev/null",
    "-c", "gc.autoDetach=false",
]  # fmt: skip


def run(var_dir: Path) -> dict[str, dict]:
    from django.test import Client

    from bench.__main__ import bench_user, start_worker, summary
    from bench.slot_handoff import make_remote
    from deploys.models import Application, Deploy
    from deploys.states import FINAL_STATES, State

    work = var_dir / "merge-overhead"
    for side in ("deploy", "bare"):
        (work / side).mkdir(parents=True, exist_ok=True)
    # One warm-up round, then BRANCHES counted ones.
    rounds = BRANCHES + 1
    deploy_remote = make_remote(work / "deploy" / "remote.git", rounds)
    bare_remote = make_remote(work / "bare" / "remote.git", rounds)
    app = Application.objects.create(
        slug=SLUG, name="Bench merge", git_remote_url=str(deploy_remote), build_command="true"
    )
    user = bench_user()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)
    clone = work / "bare-clone"
    _git("clone", "--quiet", "--no-checkout", "--template=", "--origin", "origin", "--",
         str(bare_remote), str(clone), cwd=work)  # fmt: skip

    deploy_ms, bare_ms, overhead_ms = [], [], []
    bare_parts: dict[str, list[float]] = {}
    states_ms: dict[str, list[float]] = {}
    worker = start_worker(var_dir / "worker-merge-overhead.log")
    try:
        for n in range(rounds):
            branch = f"bench/{n:03d}"
            if n % 2 == 0:
                deploy = _deploy(client, app, branch, Deploy, FINAL_STATES)
                parts = _bare_script(clone, branch, n)
            else:
                parts = _bare_script(clone, branch, n)
                deploy = _deploy(client, app, branch, Deploy, FINAL_STATES)
            if deploy.state != State.MERGED:
                raise SystemExit(f"bench: deploy #{deploy.pk} ended {deploy.state}; see the log")
            if n == 0:
                continue
            took = (deploy.finished_at - deploy.created_at).total_seconds() * 1000
            bare = sum(parts.values())
            deploy_ms.append(took)
            bare_ms.append(bare)
            overhead_ms.append(took - bare)
            for name, ms in parts.items():
                bare_parts.setdefault(name, []).append(ms)
            for name, ms in _time_in_states(deploy).items():
                states_ms.setdefault(name, []).append(ms)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    figures = {
        f"merge-only deploy, POST to merged ({CONDITIONS})": summary(deploy_ms),
        "bare script: fetch, merge, push candidate, build `true`, push": summary(bare_ms),
        f"merge-only overhead beyond a bare script ({CONDITIONS})": summary(overhead_ms),
    }
    for name, samples in states_ms.items():
        figures[f"  deploy: {name}"] = summary(samples)
    for name, samples in bare_parts.items():
        figures[f"  bare script: {name}"] = summary(samples)
    return figures


def _deploy(client, app, branch: str, Deploy, final_states):
    response = client.post(
        "/api/deploys/",
        {"application": app.slug, "branch": branch, "mode": "merge_only"},
        content_type="application/json",
    )
    assert response.status_code == 201, response.content
    deploy_id = response.json()["id"]
    deadline = time.monotonic() + 120
    # Polled only to know when to go on: the figure comes from the row's own timestamps.
    while not Deploy.objects.filter(pk=deploy_id, state__in=final_states).exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: deploy #{deploy_id} did not finish in 2 minutes")
        time.sleep(0.02)
    return Deploy.objects.get(pk=deploy_id)


def _time_in_states(deploy) -> dict[str, float]:
    """How long the deploy spent in each state, queued (from its creation) to merging_to_default."""
    moves = list(deploy.events.exclude(from_state="").order_by("id"))
    moves = [event for event in moves if event.from_state != event.to_state]
    spent: dict[str, float] = {}
    entered = deploy.created_at
    for event in moves:
        spent[event.from_state] = (event.created_at - entered).total_seconds() * 1000
        entered = event.created_at
    return spent


def _bare_script(clone: Path, branch: str, n: int) -> dict[str, float]:
    """The work of a merge-only deploy and nothing else; milliseconds per part."""
    parts = {}
    started = time.perf_counter()
    _git("fetch", "--quiet", "--prune", "--no-tags", "--", "origin",
         "+refs/heads/*:refs/remotes/origin/*", cwd=clone)  # fmt: skip
    _git("checkout", "--quiet", "--force", "--detach", "refs/remotes/origin/main", cwd=clone)
    _git("clean", "-ffdxq", cwd=clone)
    date = f"@{int(datetime.now(UTC).timestamp())} +0000"
    _git("merge", "--no-ff", "--no-edit", "--no-log", "--no-gpg-sign", "-m", f"Merge {branch}",
         f"refs/remotes/origin/{branch}", cwd=clone,
         env={"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})  # fmt: skip
    candidate = _git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    _git("push", "--quiet", "--", "origin", f"+{candidate}:refs/fatcontroller/candidates/{n}",
         cwd=clone)  # fmt: skip
    now = time.perf_counter()
    parts["fetch, merge, push candidate"], started = (now - started) * 1000, now
    subprocess.run(["true"], cwd=clone, check=True)
    now = time.perf_counter()
    parts["build"], started = (now - started) * 1000, now
    _git("push", "--porcelain", "--", "origin", f"{candidate}:refs/heads/main", cwd=clone)
    parts["push to main"] = (time.perf_counter() - started) * 1000
    return parts


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [*GIT, *args],
        cwd=cwd,
        env={**os.environ, "LC_ALL": "C", **(env or {})},
        check=True,
        capture_output=True,
        text=True,
    )
