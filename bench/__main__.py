"""`make bench`: Fat Controller's figures, measured on the embedded default.

Runs against a fresh SQLite database and folder broker under FC_VAR_DIR with a real Celery
worker process, prints a table and writes build/bench/results.json. Benchmarks measure;
they never pass or fail.
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

    from bench import broker_latency, build_notification, pages, rollback_start, slot_handoff

    figures = broker_latency.run(var_dir)
    figures.update(slot_handoff.run(var_dir))
    figures.update(build_notification.run(var_dir))
    figures.update(rollback_start.run(var_dir))
    figures.update(pages.run(var_dir))
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
    print(f"{'figure':<{width}} {'n':>4} {'median ms':>10} {'p95 ms':>10} {'max ms':>10}")
    for name, f in figures.items():
        print(
            f"{name:<{width}} {f['count']:>4} {f['median_ms']:>10} {f['p95_ms']:>10} "
            f"{f['max_ms']:>10}"
        )
    print(f"written to {RESULTS.relative_to(ROOT)}")


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
