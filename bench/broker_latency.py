"""Send-to-run latency of the embedded broker against kombu's stock filesystem transport and
Redis, measured in the same run: a real worker (prefork, 2 processes, as `make run` starts
it) per broker, PINGS tasks sent one at a time, each timed from send to the moment it runs.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

PINGS = 40
# Each ping is sent after the last one ran: this measures latency, not throughput.
TRANSPORTS = ("stock", "folder", "redis")


def run(var_dir: Path) -> dict[str, dict]:
    from bench.__main__ import ROOT, summary

    figures = {}
    for name in TRANSPORTS:
        samples, crashed = measure(name, var_dir / "brokers", ROOT)
        if samples:
            label = {
                "stock": "broker send -> run: kombu filesystem (before)",
                "folder": "broker send -> run: folder transport (now)",
                "redis": "broker send -> run: Redis (reference)",
            }[name]
            figures[label] = summary(samples)
            if crashed:
                # kombu's filesystem transport reads files still being written (issue #1551).
                figures[label]["worker_crashed_after_pings"] = len(samples)
    return figures


def measure(name: str, broker_dir: Path, root: Path) -> tuple[list[float], bool]:
    """The latencies seen (ms), and whether the worker died before the last ping ran."""
    broker_dir.mkdir(parents=True, exist_ok=True)
    pings = broker_dir / f"{name}.pings"
    pings.unlink(missing_ok=True)
    env = {**os.environ, "BENCH_BROKER_DIR": str(broker_dir), "BENCH_PINGS": str(pings)}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # plain Celery apps: no Django in the worker
    os.environ.update(BENCH_BROKER_DIR=str(broker_dir))
    from bench import broker_apps

    app = getattr(broker_apps, name)
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - a broker that is not there is reported, not fatal
        print(f"bench: {name} broker unavailable ({exc}): skipped", file=sys.stderr)
        return [], False
    log = (broker_dir / f"{name}-worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", f"bench.broker_apps:{name}", "worker",
         "--concurrency=2", "--loglevel=WARNING", "--without-mingle", "--without-gossip",
         "--without-heartbeat", "-Q", "deploys"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        # Warm up: the first ping waits for the worker to start.
        if not send_and_wait(app, pings, 1, timeout=60):
            raise SystemExit(f"bench: the {name} worker did not start; see its log")
        pings.unlink(missing_ok=True)
        crashed = False
        for n in range(1, PINGS + 1):
            if not send_and_wait(app, pings, n, timeout=10):
                crashed = worker.poll() is not None
                if not crashed:
                    raise SystemExit(f"bench: ping {n} on {name} did not run within 10 s")
                break
        return [
            float(line) for line in pings.read_text().split()
        ] if pings.exists() else [], crashed
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        log.close()


def send_and_wait(app, pings: Path, count: int, *, timeout: float) -> bool:
    """Send one ping and wait until `count` have run; False if it did not in time."""
    app.send_task("bench.ping", args=[time.time()], queue="deploys")
    deadline = time.monotonic() + timeout
    while not pings.exists() or len(pings.read_text().split()) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
