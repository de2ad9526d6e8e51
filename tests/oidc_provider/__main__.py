"""`python -m tests.oidc_provider PORT REDIRECT_URI`: the test OpenID provider, set up afresh
(its database, people and the client of the Fat Controller under test) and served on
127.0.0.1:PORT until it is stopped. Started by tests/oidc_provider/__init__.py, which sets
its environment; the client secret comes in OIDC_PROVIDER_CLIENT_SECRET, not on the command
line, where any process could read it."""

import os
import sys


def set_up(redirect_uri: str, client_secret: str) -> None:
    from django.contrib.auth.models import Group, User
    from oauth2_provider.models import Application

    from tests.oidc_provider import CLIENT_ID, PASSWORD, PEOPLE

    for person in PEOPLE:
        user = User.objects.create_user(
            person.username,
            email=person.email,
            password=PASSWORD,
            first_name=person.first_name,
            last_name=person.last_name,
        )
        user.groups.set([Group.objects.get_or_create(name=name)[0] for name in person.groups])
    Application.objects.create(
        name="Fat Controller under test",
        client_id=CLIENT_ID,
        client_secret=client_secret,  # kept hashed
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uri,
        algorithm=Application.RS256_ALGORITHM,
        skip_authorization=True,  # no consent screen: the client is the provider's own
    )


def main(port: str, redirect_uri: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.oidc_provider.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    set_up(redirect_uri, os.environ["OIDC_PROVIDER_CLIENT_SECRET"])
    call_command("runserver", f"127.0.0.1:{port}", use_reloader=False, skip_checks=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
