"""The dashboard's rows kept for their minute (deploys/board_rows.py): a row kept is served
with no query of its own and is everyone's, with each person's own deploys marked and the
holder's time running set as it is served; a row whose application changed is rendered again
at once."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from deploys import board_rows, live, statemachine
from deploys.models import Application, Deploy
from deploys.states import State
from lib.durations import in_words
from tests.people import person


@pytest.fixture(autouse=True)
def one_minute(monkeypatch):
    """The minute held still: a row is kept for its minute."""
    monkeypatch.setattr(live, "minute", lambda: 29_000_000)


@pytest.fixture
def board(application, user):
    """Two applications; the first's slot held by `user`'s deploy."""
    other = Application.objects.create(slug="other", name="Other", git_remote_url="/x.git")
    holder = Deploy.objects.create(
        application=application, branch="feature/now", requester=user, state=State.BUILDING
    )
    Deploy.objects.create(application=other, branch="feature/there", requester=user)
    return holder


ELAPSED = re.compile(r'data-elapsed="(\d+)">([^<]+)</span>')
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


def test_a_kept_rows_clock_is_set_as_it_is_served(logged_in, board, monkeypatch):
    Deploy.objects.filter(pk=board.pk).update(started_at=timezone.now() - timedelta(minutes=3))
    _, first = queries(logged_in)
    then = int(ELAPSED.search(first).group(1))
    assert 180 <= then < 240

    later = board_rows.clock() + 75
    monkeypatch.setattr(board_rows, "clock", lambda: later)
    warm, again = queries(logged_in)  # the row kept: its key holds the same cursor and minute

    assert warm < 6
    seconds, words = ELAPSED.search(again).groups()
    assert int(seconds) - then in (75, 76)
    assert words == in_words(int(seconds))
