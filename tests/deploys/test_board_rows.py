"""The dashboard's rows kept for a second (deploys/board_rows.py): a row kept is served with
no query of its own and is everyone's, with each person's own deploys marked; a row whose
application changed is rendered again at once."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from deploys import statemachine
from deploys.models import Application, Deploy
from deploys.states import State
from tests.people import person


@pytest.fixture
def board(application, user):
    """Two applications; the first's slot held by `user`'s deploy."""
    other = Application.objects.create(slug="other", name="Other", git_remote_url="/x.git")
    holder = Deploy.objects.create(
        application=application, branch="feature/now", requester=user, state=State.BUILDING
    )
    Deploy.objects.create(application=other, branch="feature/there", requester=user)
    return holder


ROW = re.compile(r'<div data-live-id="app-[^"]+-row">.*?</div>', re.DOTALL)


def queries(client, path="/"):
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200
    return len(captured), response.content.decode()


def test_a_kept_row_costs_no_query_and_is_the_same_page(logged_in, board):
    cold, first = queries(logged_in)
    warm, again = queries(logged_in)

    assert warm < cold  # the rows' own queries (the board's) are not made again
    assert ROW.findall(again) == ROW.findall(first)
    assert len(ROW.findall(first)) == 2


def test_a_kept_row_marks_each_persons_own_deploys(logged_in, board):
    viewer = Client()
    viewer.force_login(person("vera", "viewer"))

    _, mine = queries(logged_in)
    _, theirs = queries(viewer)  # the same kept rows

    assert f'data-deploy-id="{board.pk}"' in mine and f'data-deploy-id="{board.pk}"' in theirs
    assert 'data-mine="1"' in mine
    assert 'data-mine="1"' not in theirs


def test_a_row_whose_application_changed_is_rendered_again_at_once(logged_in, board):
    _, before = queries(logged_in)
    assert "Build failed" not in before

    statemachine.transition(board.pk, State.BUILD_FAILED, message="red")
    _, after = queries(logged_in)
    _, fragment = queries(logged_in, "/live/dashboard/")

    assert "Build failed" in after
    assert "Build failed" in fragment
