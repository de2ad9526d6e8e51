"""Log records that say which deploy they are about, and the JSON format (LOG_FORMAT=json).

`current_deploy` holds the id of the deploy this thread is working on: set when a Celery task
whose first argument is a deploy_id starts (and cleared when it ends), and by
DeployContextMiddleware on /deploys/<pk>/... and /api/deploys/<pk>/... requests. The
DeployIdFilter on the console handler copies it onto every record as `deploy_id`, so a JSON
line carries it whenever there is one, and no line carries a stale one.

Imported by the logging configuration, before Django's apps are loaded: nothing here may
touch models.
"""

from __future__ import annotations

import contextvars
import inspect
import logging

from pythonjsonlogger.json import JsonFormatter

current_deploy: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "current_deploy", default=None
)

# The fields of every JSON line; `deploy_id` and any `extra=` come after them when present.
JSON_FIELDS = ("asctime", "levelname", "name", "message")


class DeployIdFilter(logging.Filter):
    """Adds `deploy_id` to a record when this thread is working on a deploy."""

    def filter(self, record: logging.LogRecord) -> bool:
        deploy_id = current_deploy.get()
        if deploy_id is not None and not hasattr(record, "deploy_id"):
            record.deploy_id = deploy_id
        return True


def json_formatter() -> logging.Formatter:
    """One JSON object per line; the same formatter for Django's and Celery's handlers."""
    return JsonFormatter(JSON_FIELDS, rename_fields={"levelname": "level", "name": "logger"})


def deploy_id_of(task, args, kwargs) -> int | None:
    """The deploy a Celery task works on: its `deploy_id` argument, by name or first place."""
    if kwargs and "deploy_id" in kwargs:
        return as_deploy_id(kwargs["deploy_id"])
    if args and _first_parameter(task) == "deploy_id":
        return as_deploy_id(args[0])
    return None


_first_parameters: dict[str, str | None] = {}


def _first_parameter(task) -> str | None:
    name = getattr(task, "name", None) or repr(task)
    if name not in _first_parameters:
        try:
            # A bound task's run is a method: `self` is not among its parameters.
            parameters = list(inspect.signature(task.run).parameters)
        except (TypeError, ValueError, AttributeError):
            parameters = []
        _first_parameters[name] = parameters[0] if parameters else None
    return _first_parameters[name]


def as_deploy_id(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
