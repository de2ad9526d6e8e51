"""Endpoints called by build backends, not by people: no login, a shared secret instead."""

import json

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .hooks import AUTH_HEADER, HookRejected, accept_build_notification


@csrf_exempt  # called by Jenkins, which has no CSRF cookie; the shared secret stands instead
@login_not_required
@require_POST
def jenkins_hook(request):
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return JsonResponse({"error": "the body must be JSON"}, status=400)
    try:
        build = accept_build_notification(payload, request.headers.get(AUTH_HEADER, ""))
    except HookRejected as exc:
        return JsonResponse({"error": str(exc)}, status=exc.status)
    return JsonResponse(
        {"deploy": build.deploy_id, "attempt": build.attempt, "status": build.status}, status=202
    )
