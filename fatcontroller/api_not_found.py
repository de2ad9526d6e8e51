"""What /api/ answers for a path that names no endpoint: the API's 404, not Django's page.

An API client that asks for /api/deploys/-1/ or /api/applications/a%20b/queue/ (no URL's
converter takes those) gets JSON in the errors shape, as for a deploy that does not exist, and
a stranger gets the API's 401 first. A path that only lacks its final slash is still
redirected to the one with it, as CommonMiddleware's APPEND_SLASH did before this caught it.
"""

from django.http import HttpResponsePermanentRedirect
from django.urls import Resolver404, resolve
from drf_spectacular.utils import extend_schema
from rest_framework import views
from rest_framework.exceptions import NotFound

NAME = "api-not-found"


def _with_slash(request) -> str | None:
    if request.path_info.endswith("/"):
        return None
    try:
        match = resolve(request.path_info + "/")
    except Resolver404:
        return None
    return None if match.url_name == NAME else request.get_full_path(force_append_slash=True)


@extend_schema(exclude=True)  # not an endpoint: the answer for those that are not
class NotFoundView(views.APIView):
    # DRF's APIView, not fatcontroller.apiviews': there is no body worth reading here.
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication: 401 before 404
        raise NotFound(f"No endpoint at {request.path_info[:200]}.")

    def handle_exception(self, exc):
        if isinstance(exc, NotFound) and (to := _with_slash(self.request)):
            return HttpResponsePermanentRedirect(to)
        return super().handle_exception(exc)

    def options(self, request, *args, **kwargs):  # DRF answers OPTIONS itself otherwise
        raise NotFound()
