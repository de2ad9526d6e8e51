"""Server-rendered pages. Each view reads, or calls one action, and renders."""

from django.contrib import messages
from django.core.cache import cache
from django.db.models import Prefetch
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import condition, require_POST

from builds.logs import log_tail, with_log_tail
from builds.models import Build
from lib.git import GitError

from . import actions, board_rows, dashboard, live, roles, sides, slot
from .forms import QueueDeployForm
from .models import Application, Deploy, DeployEvent, ServiceRollout
from .repositories import repository_for
from .statemachine import IllegalTransition


def dashboard_page(request, *, bound_form=None, status=200):
    return render(
        request,
        "deploys/dashboard.html",
        _board_context(request, bound_form=bound_form),
        status=status,
    )


def _board_etag(request):
    # Kept on the request: the view reads which rows changed from the same one query.
    request.fc_board_cursors = live.board_cursors(request.user)
    return request.fc_board_cursors.etag


# private, no-cache: each answer is one person's, and is asked again (If-None-Match) each time.
@cache_control(private=True, no_cache=True)
@condition(etag_func=_board_etag)
def dashboard_live(request):
    """The dashboard's rows that changed since the script's ?since= token (all of them
    without one), polled by static/js/live.js; a 304 when none did (deploys/live.py)."""
    cursors = request.fc_board_cursors
    changed = live.changed_since(cursors, request.GET.get("since"))
    applications = Application.objects.all()
    if changed is not None:
        applications = applications.filter(pk__in=changed)
    rows = board_rows.rows(request.user, cursors, applications)
    response = render(request, "deploys/_board_live.html", {"rows": rows})
    response["X-Live-Cursor"] = cursors.token
    return response


# A queue form in each row up to this many applications; beyond, a form each would be half
# the page, and each row links to the form on its application's page instead.
INLINE_QUEUE_FORMS = 10


def _board_context(request, *, bound_form=None) -> dict:
    rows = board_rows.rows(
        request.user, live.board_cursors(request.user), Application.objects.all()
    )
    inline = len(rows) <= INLINE_QUEUE_FORMS
    entries = []
    for row in rows:
        slug = row.application.slug
        if bound_form is not None and bound_form.data.get("application") == slug:
            form = bound_form  # the errors next to the fields, whatever the page's size
        else:
            form = QueueDeployForm(initial={"application": slug}) if inline else None
        entries.append({"row": row, "form": form})
    return {"entries": entries}


@require_POST
def queue_deploy(request):
    form = QueueDeployForm(request.POST)
    if form.is_valid():
        try:
            deploy = actions.queue_deploy(requester=request.user, **form.cleaned_data)
        except roles.NotAllowed as exc:
            messages.error(request, f"The deploy was not queued: {exc}")
            return dashboard_page(request, bound_form=form, status=403)
        except actions.DeployRequestError as exc:
            for field, field_errors in exc.errors.items():
                for error in field_errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, f"Queued {deploy.branch} as deploy #{deploy.pk}.")
            return redirect("deploy", pk=deploy.pk)
    # The errors go next to their fields, in the form as it was filled in.
    messages.error(request, "The deploy was not queued: " + _form_errors(form))
    return dashboard_page(request, bound_form=form, status=400)


def branches(request, slug: str):
    """Branch names for the queue form's suggestions, by ls-remote, cached for a minute."""
    application = get_object_or_404(Application, slug=slug)
    key = f"branches:{application.pk}"
    names = cache.get(key)
    if names is None:
        try:
            names = [
                name
                for name in repository_for(application).list_branches()
                if name != application.default_branch
            ]
        except GitError as exc:
            return JsonResponse({"branches": [], "error": str(exc)}, status=502)
        cache.set(key, names, 60)
    return JsonResponse({"branches": names})


def _form_errors(form) -> str:
    return " ".join(str(e) for errors in form.errors.values() for e in errors)


def deploy_page(request, pk: int):
    return render(request, "deploys/deploy.html", _deploy_context(request, pk))


@cache_control(private=True, no_cache=True)
@condition(etag_func=lambda request, pk: live.deploy_etag(request.user, pk))
def deploy_live(request, pk: int):
    """The deploy page's live parts (not the logs, which stream on their own); a 304 when
    nothing changed (deploys/live.py). X-Live-Final: the deploy has ended, nothing more will
    change, and the script stops polling."""
    context = _deploy_context(request, pk)
    response = render(request, "deploys/_deploy_live.html", context)
    if context["deploy"].is_final:
        response["X-Live-Final"] = "1"
    return response


def _deploy_context(request, pk: int) -> dict:
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
    rollouts = list(deploy.rollouts.all())
    phases = sorted({r.phase for r in rollouts}) or dashboard.phases_of(
        [deploy.application_id]
    ).get(deploy.application_id, [])
    return {
        "deploy": deploy,
        "builds": builds,
        "steps": dashboard.steps(deploy, phases, rollouts),
        "rollout_services": sides.services_of(rollouts),
        "position": slot.queue_position(deploy),
        "actions": actions.allowed_actions(deploy, request.user),
    }


def _button(action, done: str):
    @require_POST
    def view(request, pk: int):
        deploy = get_object_or_404(Deploy, pk=pk)
        state_before = deploy.state
        try:
            after = action(deploy, actor=request.user)
        except roles.NotAllowed as exc:
            return _refused(request, pk, exc)
        except IllegalTransition as exc:
            return _answer(request, pk, "error", str(exc), status=409)
        if after.state == state_before:  # a double click, or a page out of date
            return _answer(
                request, pk, "info", f"Nothing to do: it is already {after.get_state_display()}."
            )
        return _answer(request, pk, "success", done)

    return view


def _answer(request, pk: int, level: str, text: str, *, status: int = 200, go_to: int = 0):
    """A button's result: JSON for the page's script, a message and a redirect without it."""
    if request.headers.get("X-Requested-With") == "fetch":
        body = {"level": level, "message": text}
        if go_to:
            body["location"] = reverse("deploy", args=[go_to])
        return JsonResponse(body, status=status)
    getattr(messages, level)(request, text)
    return redirect("deploy", pk=go_to or pk)


def _refused(request, pk: int, refusal: roles.NotAllowed):
    """A 403 either way: JSON for the page's script, the 403 page for a form sent without it
    (a crafted POST, a page without its script), never a redirect that looks like success."""
    if request.headers.get("X-Requested-With") == "fetch":
        return _answer(request, pk, "error", str(refusal), status=403)
    raise refusal


cancel = _button(actions.cancel, "Cancelled.")
abandon = _button(actions.abandon, "Abandoned: the slot is handed on.")
retry_build = _button(actions.retry_build, "The build runs again.")


@require_POST
def restore(request, pk: int):
    release = get_object_or_404(Deploy, pk=pk)
    try:
        restoring = actions.restore(release, actor=request.user)
    except roles.NotAllowed as exc:
        return _refused(request, pk, exc)
    except actions.DeployRequestError as exc:
        return _answer(request, pk, "error", str(exc), status=400)
    return _answer(
        request,
        pk,
        "success",
        f"Queued deploy #{restoring.pk} to restore this release.",
        go_to=restoring.pk,
    )
