"""A viewer tries every deployer and maintainer action there is, through the pages (a form
POST, as a crafted request would send it), the API with a session and the API with the
viewer's own token: each is a 403 and not one row of any table changes. The same requests
from a maintainer are not refused, so they are real requests that would have acted.

The actions come from the URL map (test_roles.CHANGES, which a new endpoint must join), so
a new one is tried here too. The figures are in docs/reliability.md ("Who may do what")."""

import json
from collections import Counter
from pathlib import Path

import pytest
from django.apps import apps
from django.test import Client
from django.urls import get_resolver, reverse
from rest_framework.test import APIClient

from accounts import tokens
from deploys.models import Deploy
from deploys.states import State
from tests.deploys.test_roles import CHANGES
from tests.migration_world import make_world
from tests.people import person

pytestmark = pytest.mark.django_db

FIGURES = Path(__file__).resolve().parents[2] / "build" / "reliability" / "viewer-refused.json"

# The state each deploy action is tried in: one that allows it, so only the role refuses.
STATE_FOR = {
    "cancel": State.QUEUED,
    "abandon": State.BUILD_FAILED,
    "retry-build": State.BUILD_FAILED,
    "restore": State.SUCCEEDED,
}
# Rows that a request may write whoever sends it: the session and the login's bookkeeping.
NOT_COMPARED = {"sessions.session", "axes.accessattempt", "axes.accesslog"}
NOT_COMPARED_FIELDS = {"accounts.apitoken": {"last_used_at"}}  # a token notes its use


def everything() -> dict[str, list[tuple]]:
    """Every row of every table, to compare before and after."""
    rows = {}
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in NOT_COMPARED:
            continue
        skipped = NOT_COMPARED_FIELDS.get(label, set())
        fields = [f.attname for f in model._meta.concrete_fields if f.name not in skipped]
        rows[label] = sorted(model._base_manager.values_list(*fields), key=repr)
    return rows


def path_of(name: str, application, world, deploys) -> str:
    parameters = get_resolver().reverse_dict.getlist(name)[0][0][0][1]
    values = {
        "pk": deploys[CHANGES[name]].pk if "pk" in parameters else None,
        "slug": world.application.slug if "position" in parameters else application.slug,
        "position": 1,
    }
    return reverse(name, kwargs={key: values[key] for key in parameters})


def body_of(name: str, application) -> dict:
    return {
        "application": application.slug,
        "branch": "feature/clean-merge",
        "mode": "deploy",
        "reason": "tried by a viewer",
        "to": "dual_running",
    }


def clients_for(user):
    """The ways in: (surface, client). The API both with a session and with a token."""
    page = Client()
    page.force_login(user)
    session_api = APIClient()
    session_api.force_login(user)
    _, key = tokens.make(user, name="tried")
    token_api = APIClient(headers={"Authorization": f"Token {key}"})
    return {"pages": page, "the API with a session": session_api, "the API with a token": token_api}


def tried_by(user, application, world):
    """Every action, each way in; yields (name, surface, answer, rows changed)."""
    # One deploy per state: a failed build holds the slot, and one may hold it.
    by_state = {
        state: Deploy.objects.create(
            application=application, branch=f"feature/{state}", requester=user, state=state
        )
        for state in set(STATE_FOR.values())
    }
    deploys = {action: by_state[state] for action, state in STATE_FOR.items()}
    for surface, client in clients_for(user).items():
        for name in sorted(CHANGES):
            if name.startswith("api-") != ("API" in surface):
                continue
            path = path_of(name, application, world, deploys)
            before = everything()
            if surface == "pages":
                answer = client.post(path, body_of(name, application))
            else:
                answer = client.post(path, body_of(name, application), format="json")
            after = everything()
            changed = sorted(label for label in after if after[label] != before[label])
            yield name, surface, answer, changed


def test_a_viewer_is_refused_every_action_and_nothing_changes(application):
    world = make_world()
    viewer = person("vic", "viewer")
    tried, refused, changed_anything = Counter(), Counter(), []
    for name, surface, answer, changed in tried_by(viewer, application, world):
        tried[surface] += 1
        refused[surface] += answer.status_code == 403
        if changed:
            changed_anything.append((name, surface, changed))
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    FIGURES.write_text(
        json.dumps(
            {"tried": dict(tried), "refused": dict(refused), "changed": len(changed_anything)},
            indent=2,
        )
        + "\n"
    )
    assert refused == tried
    assert changed_anything == []
    tried, refused = tried.total(), refused.total()
    # 8 page actions, 8 API actions each with a session and with a token (docs/reliability.md).
    assert (tried, refused) == (3 * len(CHANGES) // 2, tried)
    assert tried >= 24


def test_a_maintainer_sending_the_same_requests_is_not_refused(application):
    world = make_world()
    maintainer = person("mia", "maintainer")
    answers, acted = {}, set()
    for name, surface, answer, changed in tried_by(maintainer, application, world):
        answers[name, surface] = answer.status_code
        if changed:
            acted.add(name)
    assert not {key: status for key, status in answers.items() if status in (401, 403, 404)}
    # The first of each acts (later ones find it done: a 400 or 409, never a 403).
    assert acted >= {
        "queue-deploy", "deploy-cancel", "deploy-abandon", "application-lock",
        "application-unlock", "application-migration-move", "api-application-lock",
        "api-application-unlock",
    }  # fmt: skip
