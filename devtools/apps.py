"""The devtools app: it exists so Django finds its management commands; it has no models."""

from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    name = "devtools"
    verbose_name = "Developer tools"
