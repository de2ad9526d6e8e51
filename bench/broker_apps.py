"""Minimal Celery apps for the broker latency bench: one per transport, no Django.

`celery -A bench.broker_apps:folder worker` and so on; BENCH_BROKER_DIR says where the
folder brokers keep their files, BENCH_PINGS where the ping task writes what it saw.
"""

import os
import time
from pathlib import Path

from celery import Celery

from lib import folder_transport

folder_transport.register()
BROKER_DIR = Path(os.environ.get("BENCH_BROKER_DIR", "var/bench/brokers"))


def _app(name: str, url: str, options: dict) -> Celery:
    # Not the current app: the bench process goes on sending its deploys through its own.
    app = Celery(f"bench-{name}", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=options,
        task_ignore_result=True,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        task_default_queue="deploys",
    )

    @app.task(name="bench.ping")
    def ping(sent_at: float) -> None:
        # The time from send to run, as the task sees it.
        with open(os.environ["BENCH_PINGS"], "a") as out:
            out.write(f"{(time.time() - sent_at) * 1000:.3f}\n")

    return app


def _stock_folders() -> dict:
    root = BROKER_DIR / "stock"
    for sub in ("queue", "processed", "control"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(root / "queue"),
        "data_folder_out": str(root / "queue"),
        "processed_folder": str(root / "processed"),
        "control_folder": str(root / "control"),
        "store_processed": False,
        "polling_interval": 0.1,
    }


# kombu's own filesystem transport, as the embedded default used it before.
stock = _app("stock", "filesystem://", _stock_folders())
# lib/folder_transport.py, the embedded default's broker now.
folder = _app(
    "folder", "folder://", {"folder": str(BROKER_DIR / "folder"), "polling_interval": 0.1}
)
# Redis, the production broker, for reference (a database of its own).
redis = _app("redis", os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"), {})
