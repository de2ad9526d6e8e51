"""The Celery app the soak's workers run: Fat Controller's own, plus a record of every task.

Each task a worker starts is written as one line to FC_SOAK_TASK_LOG (appended, so the
workers share the file): when, which worker, which process, which task, which deploy. The
tests read it to know which worker ran a step (whose worker to kill, which worker a deploy
queued after a fault ran on). It changes nothing the tasks do.
"""

import os
import time

from celery.signals import task_prerun

from fatcontroller.celery import app

__all__ = ["app"]

TASK_LOG = os.environ.get("FC_SOAK_TASK_LOG", "")
WORKER = os.environ.get("FC_SOAK_WORKER", "?")


@task_prerun.connect
def _record(task=None, args=None, **_):
    if not TASK_LOG:
        return
    first = args[0] if args else ""
    line = f"{time.time():.3f}\t{WORKER}\t{os.getpid()}\t{task.name}\t{first}\n"
    fd = os.open(TASK_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
