from django.urls import path

from . import views

urlpatterns = [
    path("jenkins/", views.jenkins_hook, name="hook-jenkins"),
]
