"""Celery and request hooks, connected in MonitoringConfig.ready() in every process.

* A worker records its heartbeat as each task starts (not for tasks run eagerly in another
  process, which prove nothing about workers) and once when it is ready.
* Beat records its heartbeat as it starts and each time it sends a scheduled task; other
  processes send tasks too, so only the process where beat_init fired counts as beat.
* While a task whose first argument is a deploy_id runs, its log records carry that id.
* With LOG_FORMAT=json, the handlers Celery sets up for the worker and beat (root and task
  loggers) write JSON with the deploy id too; Celery's levels and log files are kept.
"""

from __future__ import annotations

import contextvars
import logging

from celery import signals as celery_signals
from django.conf import settings
from django.core.signals import request_finished
from django.db import close_old_connections
from django.dispatch import receiver

from . import heartbeats, logs

log = logging.getLogger(__name__)

# task id -> the token that puts current_deploy back as it was before the task.
_tokens: dict[str, contextvars.Token] = {}
_in_beat = False


@celery_signals.task_prerun.connect(dispatch_uid="monitoring.task_started")
def _task_started(task_id=None, task=None, args=None, kwargs=None, **_) -> None:
    # Set even to None: a task about no deploy must not carry the previous task's id.
    _tokens[task_id] = logs.current_deploy.set(logs.deploy_id_of(task, args, kwargs))
    request = getattr(task, "request", None)
    if request is not None and not getattr(request, "is_eager", False):
        heartbeats.record("worker", getattr(request, "hostname", "") or "")


@celery_signals.task_postrun.connect(dispatch_uid="monitoring.task_ended")
def _task_ended(task_id=None, **_) -> None:
    token = _tokens.pop(task_id, None)
    if token is None:
        return
    try:
        logs.current_deploy.reset(token)
    except ValueError:  # set in another context (a pool that moved the task): just clear
        logs.current_deploy.set(None)


@celery_signals.worker_ready.connect(dispatch_uid="monitoring.worker_ready")
def _worker_ready(sender=None, **_) -> None:
    heartbeats.record("worker", getattr(sender, "hostname", "") or "", force=True)


@celery_signals.beat_init.connect(dispatch_uid="monitoring.beat_started")
def _beat_started(**_) -> None:
    global _in_beat
    _in_beat = True
    _beat_heartbeat(force=True)


@celery_signals.before_task_publish.connect(dispatch_uid="monitoring.task_sent")
def _task_sent(**_) -> None:
    if _in_beat:
        _beat_heartbeat()


def _beat_heartbeat(*, force: bool = False) -> None:
    # Beat has no request cycle to recycle its database connection: drop one that broke or
    # outlived CONN_MAX_AGE before writing, as a worker does before each task.
    close_old_connections()
    heartbeats.record("beat", force=force)


@celery_signals.after_setup_logger.connect(dispatch_uid="monitoring.json_root_logger")
@celery_signals.after_setup_task_logger.connect(dispatch_uid="monitoring.json_task_logger")
def _json_for_celery(logger=None, **_) -> None:
    if settings.LOG_FORMAT != "json" or logger is None:
        return
    for handler in logger.handlers:
        handler.setFormatter(logs.json_formatter())
        if not any(isinstance(f, logs.DeployIdFilter) for f in handler.filters):
            handler.addFilter(logs.DeployIdFilter())


@receiver(request_finished, dispatch_uid="monitoring.request_finished")
def _request_finished(**_) -> None:
    # After the response is sent (and Django has logged a 4xx or 5xx): the next thing this
    # thread logs is not about that request's deploy.
    logs.current_deploy.set(None)
