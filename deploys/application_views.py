"""The application pages: every application and its lock; one application's settings, services,
placements and the revision each runs; the lock and unlock buttons.

Each view reads, or calls one function of deploys.applications, and renders.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from fatcontroller.text import displayable

from . import applications, slot
from .actions import DeployRequestError
from .forms import QueueDeployForm
from .models import Application


def application_list(request):
    return render(
        request,
        "deploys/applications.html",
        {"summaries": applications.application_summaries()},
    )


def application_page(request, slug: str):
    return _render_page(request, slug)


def _render_page(request, slug: str, *, reason: str = "", errors=None, status: int = 200):
    return render(
        request,
        "deploys/application.html",
        {
            "page": applications.application_page(slug),
            "form": QueueDeployForm(initial={"application": slug}),
            "max_reason_length": applications.MAX_REASON_LENGTH,
            "reason": reason,
            "errors": errors or {},
        },
        status=status,
    )


@require_POST
def lock(request, slug: str):
    application = get_object_or_404(Application, slug=slug)
    reason = request.POST.get("reason", "")
    try:
        application = applications.lock_application(application, actor=request.user, reason=reason)
    except DeployRequestError as exc:
        # Shown next to the field, with what was typed (less what no page can show).
        return _render_page(
            request, slug, reason=displayable(reason), errors=exc.errors, status=400
        )
    except applications.AlreadyLocked as exc:
        messages.info(request, f"Nothing to do: {exc}")
        return redirect("application", slug=slug)
    holder, _ = slot.queue_of(application)
    carries_on = f" Deploy #{holder.pk}, which holds the slot, carries on." if holder else ""
    messages.success(
        request, f"Locked {application.slug}: deploys queue but none starts.{carries_on}"
    )
    return redirect("application", slug=slug)


@require_POST
def unlock(request, slug: str):
    application = get_object_or_404(Application, slug=slug)
    if applications.unlock_application(application, actor=request.user):
        messages.success(request, f"Unlocked {application.slug}: the next queued deploy starts.")
    else:
        messages.info(request, f"Nothing to do: {application.slug} is not locked.")
    return redirect("application", slug=slug)
