from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The people's side: API tokens and the audit log (single sign-on is to come)."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import audit  # noqa: F401 - connects the login signals
