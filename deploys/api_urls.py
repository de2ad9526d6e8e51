from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from builds import api as builds_api
from clusters import api as clusters_api
from fatcontroller import (
    api_not_found,
    converters,  # noqa: F401 - registers <id:...>, used below
)

from . import actions, api, audit_views, migration_api

urlpatterns = [
    path("deploys/", api.DeployListView.as_view(), name="api-deploys"),
    path("deploys/<id:pk>/", api.DeployDetailView.as_view(), name="api-deploy"),
    path(
        "deploys/<id:pk>/cancel/",
        api.DeployActionView.as_view(action=actions.cancel),
        name="api-deploy-cancel",
    ),
    path(
        "deploys/<id:pk>/abandon/",
        api.DeployActionView.as_view(action=actions.abandon),
        name="api-deploy-abandon",
    ),
    path(
        "deploys/<id:pk>/retry-build/",
        api.DeployActionView.as_view(action=actions.retry_build),
        name="api-deploy-retry-build",
    ),
    path("deploys/<id:pk>/restore/", api.RestoreView.as_view(), name="api-deploy-restore"),
    # Its old name, kept for the clients that call it.
    path("deploys/<id:pk>/rollback/", api.RollbackView.as_view()),
    path(
        "deploys/<id:pk>/builds/<id:attempt>/log",
        builds_api.BuildLogView.as_view(),
        name="api-build-log",
    ),
    path("applications/<slug:slug>/queue/", api.QueueView.as_view(), name="api-queue"),
    path(
        "applications/<slug:slug>/lock/",
        api.ApplicationLockView.as_view(),
        name="api-application-lock",
    ),
    path(
        "applications/<slug:slug>/unlock/",
        api.ApplicationUnlockView.as_view(),
        name="api-application-unlock",
    ),
    path(
        "applications/<slug:slug>/migration/",
        migration_api.MigrationPlanView.as_view(),
        name="api-migration",
    ),
    path(
        "applications/<slug:slug>/migration/phases/<id:position>/move/",
        migration_api.MigrationMoveView.as_view(),
        name="api-migration-move",
    ),
    path(
        "applications/<slug:slug>/config/",
        clusters_api.AppConfigView.as_view(),
        name="api-app-config",
    ),
    path(
        "clusters/<str:name>/reports/",
        clusters_api.ClusterReportsView.as_view(),
        name="api-cluster-reports",
    ),
    path("reports/", clusters_api.OpenReportsView.as_view(), name="api-reports"),
    path("audit/", audit_views.AuditView.as_view(), name="api-audit"),
    # The OpenAPI schema answers 401 like the API; the docs page is a person's, so it sends
    # them to the login page first (DRF's views are exempt from LoginRequiredMiddleware).
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    # Last: any other path under /api/ is the API's 404 (JSON), not Django's page.
    re_path(r"", api_not_found.NotFoundView.as_view(), name=api_not_found.NAME),
]
