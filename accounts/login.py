"""The login page (/login/): the password form while FC_LOCAL_PASSWORDS is on, and the single
sign-on link while FC_OIDC_ISSUER is set (accounts/oidc.py)."""

from django.conf import settings
from django.contrib.auth import views as auth_views

from . import oidc


class LoginView(auth_views.LoginView):
    def get_context_data(self, **kwargs):
        return super().get_context_data(
            sso=oidc.enabled(), local_passwords=settings.FC_LOCAL_PASSWORDS, **kwargs
        )
