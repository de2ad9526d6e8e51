"""A real Celery worker in a thread of the test process (celery.contrib.testing), on Redis, so
it sees pytest-django's test database. For a `worker` fixture: the name tells the autouse
`sent_tasks` fixture to leave the steps' tasks on the broker."""

from collections.abc import Iterator
from contextlib import contextmanager

from celery.contrib.testing.worker import start_worker

from fatcontroller.celery import app as celery_app


@contextmanager
def worker_in_this_process(settings) -> Iterator[object]:
    """Empty queues and one solo worker, stopped when the block ends."""
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    with celery_app.connection_for_write() as connection:
        for queue in settings.CELERY_TASK_QUEUES:
            queue.bind(connection.default_channel).purge()
    with start_worker(celery_app, perform_ping_check=False, concurrency=1, pool="solo") as worker:
        yield worker
