"""Slot handoff (a deploy's final state to the next deploy's first move) and API create time."""

import subprocess
import time
from pathlib import Path

DEPLOYS = 50


def run(var_dir: Path) -> dict[str, dict]:
    from django.test import Client

    from bench.__main__ import bench_user, start_worker, summary
    from deploys.models import Application, Deploy
    from deploys.states import FINAL_STATES, State

    remote = make_remote(var_dir / "bench-remote.git", DEPLOYS)
    app = Application.objects.create(
        slug="bench", name="Bench", git_remote_url=str(remote), build_command="true"
    )
    user = bench_user()
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(user)

    worker = start_worker(var_dir / "worker.log")
    try:
        create_ms = []
        for n in range(DEPLOYS):
            started = time.perf_counter()
            response = client.post(
                "/api/deploys/",
                {"application": app.slug, "branch": f"bench/{n:03d}", "mode": "merge_only"},
                content_type="application/json",
            )
            create_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 201, response.content
        deadline = time.monotonic() + 600
        while Deploy.objects.exclude(state__in=FINAL_STATES).exists():
            if time.monotonic() > deadline:
                raise SystemExit("bench: deploys did not finish in 10 minutes; see worker.log")
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    deploys = list(Deploy.objects.filter(application=app).order_by("started_at"))
    not_merged = [d.pk for d in deploys if d.state != State.MERGED]
    if not_merged:
        raise SystemExit(f"bench: deploys {not_merged} did not merge; see worker.log")
    handoff_ms = []
    for previous, following in zip(deploys, deploys[1:], strict=False):
        took_slot = following.events.get(to_state=State.MERGING).created_at
        handoff_ms.append((took_slot - previous.finished_at).total_seconds() * 1000)
    return {
        "slot handoff (final -> next merging)": summary(handoff_ms),
        "API create deploy": summary(create_ms),
    }


def make_remote(remote: Path, branches: int) -> Path:
    seed = remote.parent / "bench-seed"
    git = ["git", "-c", "user.name=Bench", "-c", "user.email=bench@example.com"]
    subprocess.run(
        ["git", "init", "-q", "--bare", "--initial-branch=main", str(remote)], check=True
    )
    subprocess.run(["git", "init", "-q", "--initial-branch=main", str(seed)], check=True)
    (seed / "README").write_text("bench\n")
    subprocess.run([*git, "add", "README"], cwd=seed, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "start"], cwd=seed, check=True)
    for n in range(branches):
        subprocess.run(
            [*git, "checkout", "-q", "-b", f"bench/{n:03d}", "main"], cwd=seed, check=True
        )
        (seed / f"file-{n:03d}.txt").write_text(f"{n}\n")
        subprocess.run([*git, "add", "."], cwd=seed, check=True)
        subprocess.run([*git, "commit", "-q", "-m", f"change {n}"], cwd=seed, check=True)
    subprocess.run(["git", "push", "-q", str(remote), "--all"], cwd=seed, check=True)
    return remote
