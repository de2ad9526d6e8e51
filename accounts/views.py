"""The tokens page (/tokens/): a person's own API tokens, made and revoked there."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from fatcontroller.text import text_problem

from . import tokens
from .models import ApiToken


def token_list(request, *, new_key: str = "", error: str = "", typed: str = "", status=200):
    return render(
        request,
        "accounts/tokens.html",
        {
            "tokens": ApiToken.objects.filter(user=request.user),
            "new_key": new_key,
            "error": error,
            "typed": typed,
            "default_days": settings.FC_TOKEN_DAYS,
            "max_days": tokens.MAX_DAYS,
        },
        status=status,
    )


@require_POST
def make_token(request):
    name = request.POST.get("name", "")
    days_text = request.POST.get("days", "").strip()
    problem = text_problem(name) or text_problem(days_text)
    if problem:
        return token_list(request, error=problem, status=400)
    try:
        days = int(days_text) if days_text else None
    except ValueError:
        return token_list(request, error="days: a whole number", typed=name, status=400)
    try:
        token, key = tokens.make(request.user, name, days)
    except tokens.TokenRefused as exc:
        return token_list(request, error=str(exc), typed=name, status=400)
    # Shown in this answer only: never stored, never in a message (a cookie) or a log.
    return token_list(request, new_key=key, status=201)


@require_POST
def revoke_token(request, pk: int):
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if tokens.revoke(token, by=request.user):
        messages.success(request, f"Revoked {token.name} ({token.prefix}...).")
    else:
        messages.info(request, f"Nothing to do: {token.name} was revoked already.")
    return redirect("tokens")
