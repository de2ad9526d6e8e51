"""Who may do what (DESIGN.md, "Who may do what"): the one place that decides, for pages,
buttons, fragments and the API alike.

A person's role on an application is the highest of their grants (RoleGrant: to them or to
one of their groups, on that application or on every one), else FC_DEFAULT_ROLE (viewer);
staff administer everything. The rules, as `rules` predicates on (user, deploy or
application):

    view                          viewer
    queue, restore                deployer
    cancel, abandon, retry_build  deployer on their own deploy; maintainer on anyone's
    lock, unlock, move_phase      maintainer

`check` raises NotAllowed (Django's PermissionDenied: a 403, saying why) and is called by the
actions themselves (actions.py, applications.py) and by the migration views, so nothing
reaches a change without it; allowed_actions and the pages ask `may` to leave out what a
person may not press. A person's grants are read once per request (kept on the user object).
"""

from __future__ import annotations

import rules
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Case, Q, Subquery, Value, When

from .models import Application, Deploy, Role, RoleGrant

VIEWER, DEPLOYER, MAINTAINER, STAFF = 1, 2, 3, 4
RANK = {Role.VIEWER: VIEWER, Role.DEPLOYER: DEPLOYER, Role.MAINTAINER: MAINTAINER}
NAME = {VIEWER: "viewer", DEPLOYER: "deployer", MAINTAINER: "maintainer", STAFF: "staff"}
EVERY_APPLICATION = None
CACHE = "_fc_role_ranks"


class NotAllowed(PermissionDenied):
    """The person's role does not allow it: a 403, and nothing changed."""


def _rank_without_grants(user) -> int | None:
    """The rank no grant decides: 0 for nobody logged in, STAFF for staff; None otherwise."""
    if user is None or not user.is_authenticated or not user.is_active:
        return 0
    if user.is_staff or user.is_superuser:
        return STAFF
    return None


def rank(user, application: Application | int | None) -> int:
    """The person's role on the application, as a rank (0: not logged in)."""
    fixed = _rank_without_grants(user)
    if fixed is not None:
        return fixed
    ranks = getattr(user, CACHE, None)
    if ranks is None:
        ranks = _ranks(user)
        setattr(user, CACHE, ranks)
    application_id = application.pk if isinstance(application, Application) else application
    return rank_of_granted(user, max(ranks.get(EVERY_APPLICATION, 0), ranks.get(application_id, 0)))


def rank_of_granted(user, granted: int | None) -> int:
    """The rank `rank` gives, from the highest of the person's grants on the application
    (granted_rank's answer; None: none)."""
    fixed = _rank_without_grants(user)
    if fixed is not None:
        return fixed
    return max(RANK[Role(settings.FC_DEFAULT_ROLE)], granted or 0)


def granted_rank(user, application_id) -> Subquery:
    """The highest of the person's grants on the application (an id or an OuterRef) or on
    every one, as a subquery: for a query that must answer differently when a grant
    changes, in that query and not one more (the live polls' cursor, deploys/live.py)."""
    by_rank = Case(
        *(When(role=role, then=Value(number)) for role, number in RANK.items()), default=0
    )
    grants = RoleGrant.objects.filter(
        Q(user=user.pk) | Q(group__in=user.groups.all()),
        Q(application=application_id) | Q(application__isnull=True),
    )
    return Subquery(grants.annotate(rank=by_rank).order_by("-rank").values("rank")[:1])


def role_name(user, application) -> str:
    return NAME.get(rank(user, application), "nobody")


def _ranks(user) -> dict[int | None, int]:
    grants = RoleGrant.objects.filter(Q(user=user) | Q(group__in=user.groups.all()))
    ranks: dict[int | None, int] = {}
    for application_id, role in grants.values_list("application_id", "role"):
        ranks[application_id] = max(ranks.get(application_id, 0), RANK[Role(role)])
    return ranks


def _application_of(target) -> Application | int | None:
    if isinstance(target, Deploy):
        return target.application_id
    return target


def _at_least(minimum: int):
    @rules.predicate(name=f"is_{NAME[minimum]}")
    def predicate(user, target) -> bool:
        return rank(user, _application_of(target)) >= minimum

    return predicate


is_viewer, is_deployer, is_maintainer = (_at_least(r) for r in (VIEWER, DEPLOYER, MAINTAINER))


@rules.predicate
def is_requester(user, deploy) -> bool:
    return isinstance(deploy, Deploy) and deploy.requester_id == getattr(user, "pk", None)


RULES = rules.RuleSet()
RULES.add_rule("view", is_viewer)
RULES.add_rule("queue", is_deployer)
RULES.add_rule("restore", is_deployer)
for _own_or_maintainer in ("cancel", "abandon", "retry_build"):
    RULES.add_rule(_own_or_maintainer, (is_deployer & is_requester) | is_maintainer)
for _maintainers in ("lock", "unlock", "move_phase"):
    RULES.add_rule(_maintainers, is_maintainer)

# What each needs, as the refusal says it.
NEEDS = {
    "view": "viewer",
    "queue": "deployer",
    "restore": "deployer",
    "cancel": "deployer (on your own deploy) or maintainer",
    "abandon": "deployer (on your own deploy) or maintainer",
    "retry_build": "deployer (on your own deploy) or maintainer",
    "lock": "maintainer",
    "unlock": "maintainer",
    "move_phase": "maintainer",
}
WORDS = {"retry_build": "retry the build of", "move_phase": "move a migration phase of"}


def may(user, action: str, target) -> bool:
    """May `user` do `action` ("queue", "cancel", ...) to `target` (a Deploy or Application)?"""
    return RULES.test_rule(action, user, target)


def check(user, action: str, target) -> None:
    """NotAllowed unless `user` may do `action` to `target`."""
    if may(user, action, target):
        return
    application = target.application if isinstance(target, Deploy) else target
    what = f"deploy #{target.pk}" if isinstance(target, Deploy) else application.slug
    raise NotAllowed(
        f"You may not {WORDS.get(action, action)} {what}: it needs {NEEDS[action]} on "
        f"{application.slug}, and you are {role_name(user, application)}."
    )
