"""The JSON API. Token or session auth; every view needs a logged-in user."""

from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from builds.models import Build
from fatcontroller.api_schema import errors
from fatcontroller.apiviews import APIView

from . import actions, applications, roles, slot
from .api_errors import Conflict
from .api_requests import LockRequest, QueueDeployRequest
from .api_schema import LockStateSerializer, QueueSerializer
from .models import Application, Deploy, DeployEvent, ServiceRollout
from .serializers import DeploySerializer, DeploySummarySerializer
from .statemachine import IllegalTransition


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
    @extend_schema(
        operation_id="deploys_queue",
        summary="Queue a deploy",
        description="Queue a branch of an application: it waits for the application's slot, "
        "then is merged, built and rolled out (or only merged, in merge_only mode).",
        request=QueueDeployRequest,
        responses={201: DeploySerializer, **errors(400, 401, 403, 415)},
    )
    def post(self, request):
        body = QueueDeployRequest(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            deploy = actions.queue_deploy(**body.validated_data, requester=request.user)
        except actions.DeployRequestError as exc:
            raise ValidationError(exc.errors) from None
        return Response(
            DeploySerializer(deploy_detail(deploy.pk), context={"user": request.user}).data,
            status.HTTP_201_CREATED,
        )


class DeployDetailView(APIView):
    @extend_schema(
        operation_id="deploys_read",
        summary="A deploy",
        description="The deploy with its builds (their logs have their own endpoint), "
        "rollouts and events, and the actions you may ask of it now.",
        responses={200: DeploySerializer, **errors(401, 404)},
    )
    def get(self, request, pk: int):
        return Response(DeploySerializer(deploy_detail(pk), context={"user": request.user}).data)


class DeployActionView(APIView):
    """POST-only buttons: cancel, abandon, retry-build."""

    action = None

    @extend_schema(
        summary="Press the deploy's button",
        description="Cancel a queued deploy, abandon or retry the build of one whose build "
        "failed. The body, if any, is not read but must be valid JSON or a form.",
        request=None,
        responses={200: DeploySerializer, **errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request, pk: int):
        deploy = get_object_or_404(Deploy, pk=pk)
        try:
            self.action(deploy, actor=request.user)
        except IllegalTransition as exc:
            raise Conflict(str(exc)) from None
        return Response(DeploySerializer(deploy_detail(pk), context={"user": request.user}).data)


class RestoreView(APIView):
    """POST: queue a deploy that restores the revisions this release rolled out."""

    @extend_schema(
        operation_id="deploys_restore",
        summary="Restore a release",
        description="Queue a deploy that puts back the revisions this finished deploy rolled "
        "out. Answers the new deploy.",
        request=None,
        responses={201: DeploySerializer, **errors(400, 401, 403, 404, 415)},
    )
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


class RollbackView(RestoreView):
    """/rollback/, restore's old name, kept for the clients that call it."""

    @extend_schema(
        operation_id="deploys_rollback",
        summary="Restore a release (old name)",
        description="The same as restore/, under the name it had before.",
        deprecated=True,
        request=None,
        responses={201: DeploySerializer, **errors(400, 401, 403, 404, 415)},
    )
    def post(self, request, pk: int):
        return super().post(request, pk)


class QueueView(APIView):
    @extend_schema(
        operation_id="applications_queue",
        summary="An application's queue",
        description="The deploy holding the application's slot, and the ones waiting for it "
        "in the order they will take it.",
        responses={200: QueueSerializer, **errors(401, 404)},
    )
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
    """POST {"reason"}: lock the application (deploys queue, none starts); answers the
    lock's state."""

    @extend_schema(
        operation_id="applications_lock",
        summary="Lock an application",
        description="Deploys still queue, but none takes the slot until it is unlocked; the "
        "one holding it carries on.",
        request=LockRequest,
        responses={200: LockStateSerializer, **errors(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        # The role first: a viewer is refused whatever the body says.
        roles.check(request.user, "lock", application)
        body = LockRequest(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            applications.lock_application(
                application, actor=request.user, reason=body.validated_data["reason"]
            )
        except actions.DeployRequestError as exc:
            raise ValidationError(exc.errors) from None
        except applications.AlreadyLocked as exc:
            raise Conflict(str(exc)) from None
        return Response(applications.lock_state(application))


class ApplicationUnlockView(APIView):
    """POST: unlock the application (the next queued deploy takes the slot); answers the
    lock's state."""

    @extend_schema(
        operation_id="applications_unlock",
        summary="Unlock an application",
        description="The oldest queued deploy takes the free slot. Unlocking an application "
        "that is not locked changes nothing.",
        request=None,
        responses={200: LockStateSerializer, **errors(400, 401, 403, 404, 415)},
    )
    def post(self, request, slug: str):
        application = get_object_or_404(Application, slug=slug)
        applications.unlock_application(application, actor=request.user)
        return Response(applications.lock_state(application))
