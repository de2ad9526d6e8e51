from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts.login import LoginView, admin_login

urlpatterns = [
    path("login/", LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("oidc/", include("accounts.oidc_urls")),  # single sign-on, when it is on
    path("admin/login/", admin_login),  # before the admin's own, which it stands in for
    path("admin/", admin.site.urls),
    path("api/", include("deploys.api_urls")),
    path("hooks/", include("builds.urls")),
    path("", include("monitoring.urls")),  # /healthz, /metrics
    path("", include("accounts.urls")),  # /tokens/
    path("", include("deploys.urls")),
]
