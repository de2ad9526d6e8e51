"""The JSON API of clusters and services. Every view needs a logged-in user."""

from django.shortcuts import get_object_or_404
from rest_framework.response import Response

from appconfig.export import export_app_config_data
from deploys.models import Application
from fatcontroller.apiviews import APIView


class AppConfigView(APIView):
    """An application's configuration: the structure of its file (docs/app-config.md)."""

    def get(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        return Response(export_app_config_data(application))
