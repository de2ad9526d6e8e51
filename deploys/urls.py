from django.urls import path

from fatcontroller import converters  # noqa: F401 - registers <id:...>, used below

from . import application_views, audit_views, cluster_views, history_views, migration_views, views

urlpatterns = [
    path("", views.dashboard_page, name="dashboard"),
    path("clusters/<str:name>/", cluster_views.cluster_detail, name="cluster"),
    path("live/dashboard/", views.dashboard_live, name="dashboard-live"),
    path("applications/<slug:slug>/branches/", views.branches, name="application-branches"),
    path("deploys/queue/", views.queue_deploy, name="queue-deploy"),
    path("deploys/<id:pk>/", views.deploy_page, name="deploy"),
    path("deploys/<id:pk>/live/", views.deploy_live, name="deploy-live"),
    path("deploys/<id:pk>/cancel/", views.cancel, name="deploy-cancel"),
    path("deploys/<id:pk>/abandon/", views.abandon, name="deploy-abandon"),
    path("deploys/<id:pk>/retry-build/", views.retry_build, name="deploy-retry-build"),
    path("deploys/<id:pk>/restore/", views.restore, name="deploy-restore"),
    # Its old name, for a page loaded before the rename.
    path("deploys/<id:pk>/rollback/", views.restore),
    path("applications/", application_views.application_list, name="applications"),
    path("applications/<slug:slug>/", application_views.application_page, name="application"),
    path("applications/<slug:slug>/lock/", application_views.lock, name="application-lock"),
    path("applications/<slug:slug>/unlock/", application_views.unlock, name="application-unlock"),
    path(
        "applications/<slug:slug>/migration/",
        migration_views.migration_plan,
        name="application-migration",
    ),
    path(
        "applications/<slug:slug>/migration/phases/<id:position>/move/",
        migration_views.move,
        name="application-migration-move",
    ),
    path("history/", history_views.history, name="history"),
    path("audit/", audit_views.audit_page, name="audit"),
]
