"""/oidc/: the start of a single sign-on and the provider's way back (accounts/oidc.py).

Both are reached before anyone is logged in, so LoginRequiredMiddleware must let them be, as
it does the login page. Both answer 404 while single sign-on is off. The redirect URI to
register at the provider is https://HOST/oidc/callback/.
"""

from django.contrib.auth.decorators import login_not_required
from django.urls import path

from . import oidc

urlpatterns = [
    path(
        "callback/",
        login_not_required(oidc.SsoCallback.as_view()),
        name="oidc_authentication_callback",
    ),
    path(
        "authenticate/",
        login_not_required(oidc.SsoStart.as_view()),
        name="oidc_authentication_init",
    ),
]
