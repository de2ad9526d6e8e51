"""The Celery app: one queue per kind of work (deploys, builds, clusters)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fatcontroller.settings")

app = Celery("fatcontroller")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
