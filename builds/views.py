"""Endpoints called by build backends, not by people: no login, a shared secret instead.

Bodies are read by the API's rules (fatcontroller.parsers): bad input is a 400 that changes
nothing, never a 500.
"""

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from fatcontroller.parsers import JSONRejected, loads

from .hooks import AUTH_HEADER, HookRejected, accept_build_notification


@csrf_exempt  # called by Jenkins, which has no CSRF cookie; the shared secret stands instead
@login_not_required
@require_POST
def jenkins_hook(request):
    try:
        # The API's rules: no NUL, no lone surrogate, no nesting past 64 levels.
        payload = loads(request.body or b"null")
    except JSONRejected as exc:
        return JsonResponse(
            {"error": f"the body must be JSON Fat Controller accepts: {exc}"}, status=400
        )
    try:
        build = accept_build_notification(payload, request.headers.get(AUTH_HEADER, ""))
    except HookRejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(
        {"deploy": build.deploy_id, "attempt": build.attempt, "status": build.status}, status=202
    )
