"""The JSON API. Token or session auth; every view needs a logged-in user."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from builds.models import Build
from fatcontroller.apiviews import APIView

from . import actions, applications, slot
from .api_errors import Conflict
from .models import Application, Deploy, DeployEvent, ServiceRollout
from .serializers import DeploySerializer, DeploySummarySerializer
from .statemachine import IllegalTransition

DEPLOY_FIELDS = ("application", "branch", "mode", "note")


def deploy_detail(pk: int) -> Deploy:
    queryset = Deploy.objects.select_related("application", "requester").prefetch_related(
        # The logs have their own endpoint: the deploy's answer never carries them.
        Prefetch("builds", Build.objects.defer("log")),
        Prefetch("events", DeployEvent.objects.select_related("actor")),
        Prefetch(
            "rollouts",
            ServiceRollout.objects.select_related("placement__service", "placement__cluster"),
        ),
    )
    return get_object_or_404(queryset, pk=pk)


class DeployListView(APIView):
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        errors = {
            field: ["This field is required."]
            for field in ("application", "branch")
            if not isinstance(data.get(field), str) or not data.get(field)
        }
        errors.update(
            {
                field: ["Must be a string."]
                for field in ("mode", "note")
                if field in data and not isinstance(data[field], str)
            }
        )
        if errors:
            raise ValidationError(errors)
        try:
            deploy = actions.queue_deploy(
                application=data["application"],
                branch=data["branch"],
                mode=data.get("mode", "deploy"),
                note=data.get("note", ""),
                requester=request.user,
            )
        except actions.DeployRequestError as exc:
            raise ValidationError(exc.errors) from None
        return Response(
            DeploySerializer(deploy_detail(deploy.pk), context={"user": request.user}).data,
            status.HTTP_201_CREATED,
        )


class DeployDetailView(APIView):
    def get(self, request, pk: int):
        return Response(DeploySerializer(deploy_detail(pk), context={"user": request.user}).data)


class DeployActionView(APIView):
    """POST-only buttons: cancel, abandon, retry-build."""

    action = None

    def post(self, request, pk: int):
        deploy = get_object_or_404(Deploy, pk=pk)
        try:
            self.action(deploy, actor=request.user)
        except IllegalTransition as exc:
            raise Conflict(str(exc)) from None
        return Response(DeploySerializer(deploy_detail(pk), context={"user": request.user}).data)


class RestoreView(APIView):
    """POST: queue a deploy that restores the revisions this release rolled out."""

    def post(self, request, pk: int):
        release = get_object_or_404(Deploy, pk=pk)
        try:
            restoring = actions.restore(release, actor=request.user)
        except actions.DeployRequestError as exc:
            raise ValidationError(exc.errors) from None
        return Response(
            DeploySerializer(deploy_detail(restoring.pk), context={"user": request.user}).data,
            status.HTTP_201_CREATED,
        )


class QueueView(APIView):
    def get(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        holder, waiting = slot.queue_of(application)
        return Response(
            {
                "application": application.slug,
                "locked": application.locked,
                "lock_reason": application.lock_reason,
                "holder": DeploySummarySerializer(holder).data if holder else None,
                "waiting": [
                    {**DeploySummarySerializer(d).data, "position_in_queue": n}
                    for n, d in enumerate(waiting, start=1)
                ],
            }
        )


class ApplicationLockView(APIView):
    """POST {"reason"}: lock the application (deploys queue, none starts). With unlock=True,
    POST: unlock it (the next queued deploy takes the slot). Both answer the lock's state."""

    unlock = False

    def post(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        if self.unlock:
            applications.unlock_application(application, actor=request.user)
        else:
            data = request.data if isinstance(request.data, dict) else {}
            try:
                applications.lock_application(
                    application, actor=request.user, reason=data.get("reason")
                )
            except actions.DeployRequestError as exc:
                raise ValidationError(exc.errors) from None
            except applications.AlreadyLocked as exc:
                raise Conflict(str(exc)) from None
        return Response(applications.lock_state(application))
