"""Fixtures the deploys tests share; the plain helpers are in tests/pages.py and
tests/queueing.py."""

import pytest
from django.test import Client


@pytest.fixture
def csrf_client(user):
    """A client logged in as `user` that is held to CSRF checks, as a browser is."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client
