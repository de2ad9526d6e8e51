from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The people's side: logins (passwords and single sign-on), API tokens and the audit log."""

    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import audit  # noqa: F401 - connects the login signals
