"""The people the tests act as (deploys/roles.py decides what each may do)."""

from django.contrib.auth import get_user_model

PASSWORD = "correct horse battery"


def person(username: str, role: str | None = None, *, application=None, **fields):
    """A user with `role` (viewer, deployer, maintainer) on `application` (None: on every
    one); no role: FC_DEFAULT_ROLE's."""
    from deploys.models import RoleGrant

    made = get_user_model().objects.create_user(username, password=PASSWORD, **fields)
    if role is not None:
        RoleGrant.objects.create(user=made, role=role, application=application)
    return made


def maintainer(username: str, **fields):
    """One who may do everything to every application but administer: what the tests of
    the actions themselves act as (tests/deploys/test_roles.py tries the other roles)."""
    return person(username, "maintainer", **fields)
