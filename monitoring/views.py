"""/healthz for load balancers and uptime checks, /metrics for Prometheus.

Neither needs a login session. /healthz says only which part is failing. /metrics exists
only when FC_METRICS_TOKEN is set (404 otherwise, as if there were no such page) and answers
only a request carrying it as `Authorization: Bearer <token>`, compared in constant time.
"""

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from . import collector, health


@login_not_required
@never_cache
@require_GET
def healthz(request):
    status, body = health.report(health.run_checks())
    return JsonResponse(body, status=status)


@login_not_required
@never_cache
@require_GET
def metrics(request):
    token = settings.FC_METRICS_TOKEN
    if not token:
        raise Http404("no metrics here")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        response = HttpResponse("a bearer token is needed\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("wrong token\n", status=403, content_type="text/plain")
    return HttpResponse(collector.render(), content_type=CONTENT_TYPE_LATEST)
