"""The login page (/login/): the password form while FC_LOCAL_PASSWORDS is on, and the single
sign-on link while FC_OIDC_ISSUER is set (accounts/oidc.py)."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.urls import reverse

from . import oidc


class LoginView(auth_views.LoginView):
    def get_context_data(self, **kwargs):
        return super().get_context_data(
            sso=oidc.enabled(), local_passwords=settings.FC_LOCAL_PASSWORDS, **kwargs
        )


def admin_login(request, **kwargs):
    """The admin's own login page while FC_LOCAL_PASSWORDS is on; otherwise the login page,
    which offers single sign-on: the admin's form would take a password only to refuse it.
    The login page checks `next` as it always does (only this site's own addresses)."""
    if settings.FC_LOCAL_PASSWORDS:
        return admin.site.login(request, **kwargs)
    then = request.GET.get("next") or reverse("admin:index")
    return redirect(f"{reverse('login')}?{urlencode({'next': then})}")
