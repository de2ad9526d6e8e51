"""The deploy id of /deploys/<pk>/... and /api/deploys/<pk>/... requests, for their logs."""

from . import logs

# What a deploy's routes start with, before the <converter:pk> (whichever converter it is).
DEPLOY_ROUTES = ("deploys/", "api/deploys/")


class DeployContextMiddleware:
    """Sets logs.current_deploy from the pk in a deploy's URL; request_finished clears it
    (in monitoring.hooks), after Django has logged the answer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        logs.current_deploy.set(None)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if (
            match is not None
            and "pk" in view_kwargs
            and match.route.partition("<")[0] in DEPLOY_ROUTES
        ):
            logs.current_deploy.set(logs.as_deploy_id(view_kwargs["pk"]))
        return None
