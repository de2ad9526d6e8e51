"""The migration page of an application and its move buttons.

The page reads deploys.migration_page and draws deploys.migration_chart; a button posts one
move to clusters.migration.move, which judges it. A move refused by a rule is shown on the
page (409) with what was typed, bad input beside its field (400); neither changes anything.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from clusters import migration
from clusters.models import MigrationPhase, MigrationState
from fatcontroller.text import displayable

from . import roles
from .forms import MigrationMoveForm
from .migration_chart import move_words, percent, share_chart
from .migration_page import HOW_TO_ADD, migration_page
from .models import Application


def migration_plan(request, slug: str):
    return _render_page(request, get_object_or_404(Application, slug=slug))


def _render_page(request, application, *, tried=None, status: int = 200):
    """The page; `tried` is a move that did not go through: its phase, what was typed, why."""
    page = migration_page(application, request.user)
    return render(
        request,
        "deploys/migration.html",
        {
            "page": page,
            "how_to_add": HOW_TO_ADD,
            "chart": share_chart(page.shares, page.now, subject=application.name),
            "share_rows": [
                {
                    "point": point,
                    "move": move_words(point),
                    "on_ecs": percent(point.on_ecs),
                    "ecs_only": percent(point.ecs_only),
                }
                for point in page.shares
            ],
            "tried": tried or {},
        },
        status=status,
    )


@require_POST
def move(request, slug: str, position: int):
    application = get_object_or_404(Application, slug=slug)
    phase = get_object_or_404(MigrationPhase, plan__application=application, position=position)
    roles.check(request.user, "move_phase", application)
    form = MigrationMoveForm(request.POST)
    typed = displayable(request.POST.get("reason", ""))
    # Which of the phase's two buttons was pressed, to open it again with what was typed.
    forcing = request.POST.get("force", "") not in ("", "false", "0", "off")
    if not form.is_valid():
        errors = [f"{name}: {error}" for name, errs in form.errors.items() for error in errs]
        tried = {"position": position, "force": forcing, "reason": typed, "errors": errors}
        return _render_page(request, application, tried=tried, status=400)
    data = form.cleaned_data
    try:
        migration.move(
            phase, data["to"], actor=request.user, reason=data["reason"], force=data["force"]
        )
    except migration.MigrationRefused as exc:
        tried = {
            "position": position,
            "force": forcing,
            "reason": typed,
            "errors": [f"Refused: {exc}"],
        }
        return _render_page(request, application, tried=tried, status=409)
    label = MigrationState(data["to"]).label.lower()
    messages.success(request, f"Phase {phase.position} ({phase.name}) is {label} now.")
    return redirect("application-migration", slug=slug)
