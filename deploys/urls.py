from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("deploys/queue/", views.queue_deploy, name="queue-deploy"),
    path("deploys/<int:pk>/", views.deploy_page, name="deploy"),
    path("deploys/<int:pk>/cancel/", views.cancel, name="deploy-cancel"),
    path("deploys/<int:pk>/abandon/", views.abandon, name="deploy-abandon"),
    path("deploys/<int:pk>/retry-build/", views.retry_build, name="deploy-retry-build"),
    path("deploys/<int:pk>/rollback/", views.roll_back_to, name="deploy-rollback"),
]
