"""Failed logins are throttled per user name and address (django-axes, settings.py): a clear
429 page, even for the right password, until the cool-off has passed; each failure kept."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog
from django.conf import settings
from django.test import Client

from tests.people import PASSWORD, person

pytestmark = pytest.mark.django_db
ADDRESS, ELSEWHERE = "203.0.113.7", "198.51.100.9"


def log_in(password: str, *, address: str = ADDRESS, username: str = "ann"):
    return Client(REMOTE_ADDR=address).post("/login/", {"username": username, "password": password})


def test_twenty_wrong_passwords_are_throttled_and_the_right_one_works_after_the_window():
    person("ann", "viewer")
    limit = settings.AXES_FAILURE_LIMIT
    answers = [log_in(f"wrong {n}") for n in range(20)]

    assert [a.status_code for a in answers[: limit - 1]] == [200] * (limit - 1)  # the form again
    assert {a.status_code for a in answers[limit - 1 :]} == {429}
    page = answers[-1].content.decode()
    assert "Too many failed logins" in page and "<strong>ann</strong>" in page
    assert log_in(PASSWORD).status_code == 429  # locked out: the right one is refused too
    assert log_in(PASSWORD, address=ELSEWHERE).status_code == 302  # per user and address
    assert AccessFailureLog.objects.filter(username="ann", ip_address=ADDRESS).count() >= limit

    # The window passes (the attempts are as old as the cool-off).
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - settings.AXES_COOLOFF_TIME
        - timedelta(seconds=1)
    )  # fmt: skip
    answer = log_in(PASSWORD)
    assert answer.status_code == 302, answer.content[:500]
    assert not AccessAttempt.objects.filter(username="ann", ip_address=ADDRESS).exists()


def test_the_locked_out_page_escapes_the_name_it_was_given():
    for n in range(settings.AXES_FAILURE_LIMIT):
        answer = log_in(f"wrong {n}", username="<b>mallory</b>")
    assert answer.status_code == 429
    assert "&lt;b&gt;mallory&lt;/b&gt;" in answer.content.decode()
