from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Celery hooks (heartbeats, the deploy id in task logs) and the request hooks: every
        # process that loads Django (web, worker, beat) has them, each acts only where it fits.
        from . import hooks  # noqa: F401
