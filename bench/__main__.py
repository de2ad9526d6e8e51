"""`make bench`: Fat Controller's figures, measured on the embedded default.

Runs against a fresh SQLite database and folder broker under FC_VAR_DIR with a real Celery
worker process, prints a table and writes build/bench/results.json. The pages figure also
measures the production shape (gunicorn workers on the local PostgreSQL; bench/pages.py).
Benchmarks measure; they never pass or fail. `python -m bench rollback_start pages` runs
only the modules named (results.json then holds only their figures); with no name it runs
them all.
"""

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "build" / "bench" / "results.json"


def main() -> None:
    var_dir = Path(os.environ.setdefault("FC_VAR_DIR", str(ROOT / "var" / "bench")))
    shutil.rmtree(var_dir, ignore_errors=True)
    os.environ.setdefault("FC_EMBEDDED", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fatcontroller.settings")
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from bench import (
        broker_latency,
        build_notification,
        cluster_health,
        docker_rollout,
        dual_rollout,
        merge_overhead,
        pages,
        rollback_start,
        rollout_calls,
        slot_handoff,
    )

    modules = {
        "broker_latency": broker_latency,
        "slot_handoff": slot_handoff,
        "merge_overhead": merge_overhead,
        "build_notification": build_notification,
        "rollback_start": rollback_start,
        "rollout_calls": rollout_calls,
        "dual_rollout": dual_rollout,
        "docker_rollout": docker_rollout,
        "pages": pages,
        "cluster_health": cluster_health,
    }
    chosen = sys.argv[1:] or list(modules)
    unknown = [name for name in chosen if name not in modules]
    if unknown:
        raise SystemExit(f"bench: no module {', '.join(unknown)}; there are {', '.join(modules)}")
    figures: dict[str, dict] = {}
    for name in chosen:
        figures.update(modules[name].run(var_dir))
    report(figures)


def summary(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return {
        "count": len(ordered),
        "median_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(ordered[-1], 2),
    }


def report(figures: dict[str, dict]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "figures": figures,
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    width = max(40, *(len(name) for name in figures))
    # Figures in milliseconds have *_ms keys; counts (calls per service...) have bare ones.
    print(f"{'figure':<{width}} {'n':>4} {'median':>10} {'p95':>10} {'max':>10}  unit")
    for name, f in figures.items():
        unit = f.get("unit") or ("ms" if "median_ms" in f else "")
        median, p95, top = (f.get(f"{key}_ms", f.get(key, "")) for key in ("median", "p95", "max"))
        print(f"{name:<{width}} {f['count']:>4} {median:>10} {p95:>10} {top:>10}  {unit}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


def bench_user():
    """The person the benches queue deploys as: a deployer of every application (the default
    role is viewer, refused at the API)."""
    from django.contrib.auth import get_user_model

    from deploys.models import Role, RoleGrant

    user = get_user_model().objects.get_or_create(username="bench")[0]
    RoleGrant.objects.get_or_create(user=user, role=Role.DEPLOYER, application=None)
    return user


def start_worker(log_file: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A worker process; `env` is added to this process's environment for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "fatcontroller", "worker", "--loglevel=WARNING",
         "--concurrency=1", "--without-mingle", "--without-gossip", "--without-heartbeat"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


if __name__ == "__main__":
    main()
