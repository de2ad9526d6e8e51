from django.urls import path

from fatcontroller import converters  # noqa: F401 - registers <id:...>, used below

from . import views

urlpatterns = [
    path("tokens/", views.token_list, name="tokens"),
    path("tokens/new/", views.make_token, name="token-make"),
    path("tokens/<id:pk>/revoke/", views.revoke_token, name="token-revoke"),
]
