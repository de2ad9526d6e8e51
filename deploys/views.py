"""Server-rendered pages. Each view reads, or calls one action, and renders."""

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from builds.logs import log_tail, with_log_tail
from builds.models import Build

from . import actions, slot
from .forms import QueueDeployForm
from .models import Application, Deploy, DeployEvent, ServiceRollout
from .statemachine import IllegalTransition

RECENT_DEPLOYS = 10


def dashboard(request):
    applications = []
    for application in Application.objects.select_related("locked_by"):
        holder, waiting = slot.queue_of(application)
        recent = (
            Deploy.objects.filter(application=application, finished_at__isnull=False)
            .select_related("requester")
            .order_by("-finished_at")[:RECENT_DEPLOYS]
        )
        applications.append(
            {
                "application": application,
                "holder": holder,
                "waiting": waiting,
                "recent": recent,
                "form": QueueDeployForm(initial={"application": application.slug}),
            }
        )
    return render(request, "deploys/dashboard.html", {"applications": applications})


@require_POST
def queue_deploy(request):
    form = QueueDeployForm(request.POST)
    if form.is_valid():
        try:
            deploy = actions.queue_deploy(requester=request.user, **form.cleaned_data)
        except actions.DeployRequestError as exc:
            for field, field_errors in exc.errors.items():
                for error in field_errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, f"Queued {deploy.branch} as deploy #{deploy.pk}.")
            return redirect("deploy", pk=deploy.pk)
    messages.error(request, "The deploy was not queued: " + _form_errors(form))
    return redirect("dashboard")


def _form_errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


def deploy_page(request, pk: int):
    # Each build comes with the end of its log, read in the same query: never the whole log,
    # and no query per build.
    deploy = get_object_or_404(
        Deploy.objects.select_related("application", "requester").prefetch_related(
            Prefetch("events", DeployEvent.objects.select_related("actor")),
            Prefetch("builds", with_log_tail(Build.objects.order_by("attempt"))),
            Prefetch(
                "rollouts",
                ServiceRollout.objects.select_related("placement__service", "placement__cluster"),
            ),
        ),
        pk=pk,
    )
    builds = [{"build": build, "log": log_tail(build)} for build in deploy.builds.all()]
    return render(
        request,
        "deploys/deploy.html",
        {
            "deploy": deploy,
            "builds": builds,
            "position": slot.queue_position(deploy),
            "can_cancel": deploy.state in actions.CANCELLABLE,
            "can_retry": deploy.state == "build_failed",
            "can_roll_back_to": deploy.state == "succeeded"
            and any(r.status == "done" for r in deploy.rollouts.all()),
        },
    )


def _button(action, done: str):
    @require_POST
    def view(request, pk: int):
        deploy = get_object_or_404(Deploy, pk=pk)
        state_before = deploy.state
        try:
            after = action(deploy, actor=request.user)
        except IllegalTransition as exc:
            messages.error(request, str(exc))
        else:
            if after.state == state_before:  # a double click, or a page out of date
                messages.info(request, f"Nothing to do: it is already {after.get_state_display()}.")
            else:
                messages.success(request, done)
        return redirect("deploy", pk=pk)

    return view


cancel = _button(actions.cancel, "Cancelled.")
abandon = _button(actions.abandon, "Abandoned: the slot is handed on.")
retry_build = _button(actions.retry_build, "The build runs again.")


@require_POST
def roll_back_to(request, pk: int):
    release = get_object_or_404(Deploy, pk=pk)
    try:
        rollback = actions.roll_back_to(release, actor=request.user)
    except actions.DeployRequestError as exc:
        messages.error(request, str(exc))
        return redirect("deploy", pk=pk)
    messages.success(request, f"Queued deploy #{rollback.pk} to roll back to this release.")
    return redirect("deploy", pk=rollback.pk)
