"""manage.py grant NAME ROLE [--app SLUG] [--group]: give a user (or, with --group, a Django
group) a role on one application or on every one (deploys/roles.py). Granting again replaces
the role held there; `--revoke` takes it away."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts import audit
from deploys.models import Application, Role, RoleGrant


class Command(BaseCommand):
    help = "Give a user or a group a role (viewer, deployer, maintainer) on an application."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the username (or, with --group, the group's name)")
        parser.add_argument("role", choices=Role.values)
        parser.add_argument("--app", metavar="SLUG", help="one application; default: every one")
        parser.add_argument("--group", action="store_true", help="NAME is a group, made if new")
        parser.add_argument("--revoke", action="store_true", help="take the grant away instead")

    def handle(self, *args, name, role, app=None, group=False, revoke=False, **options):
        application = None
        if app is not None:
            application = Application.objects.filter(slug=app).first()
            if application is None:
                raise CommandError(f"there is no application called {app!r}")
        if group:
            holder = {"group": Group.objects.get_or_create(name=name)[0], "user": None}
        else:
            user = get_user_model().objects.filter(username=name).first()
            if user is None:
                raise CommandError(f"there is no user called {name!r}")
            holder = {"user": user, "group": None}
        where = f"on {application.slug}" if application else "on every application"
        who = f"group {name}" if group else name
        if revoke:
            deleted, _ = RoleGrant.objects.filter(
                **holder, application=application, role=role
            ).delete()
            if not deleted:
                raise CommandError(f"{who} holds no {role} grant {where}")
            audit.record(None, audit.ROLE_REVOKE, application=application, subject=who,
                         change={"role": role})  # fmt: skip
            self.stdout.write(f"{who} is no longer {role} {where}")
            return
        RoleGrant.objects.update_or_create(
            **holder, application=application, defaults={"role": role}
        )
        audit.record(None, audit.ROLE_GRANT, application=application, subject=who,
                     change={"role": role})  # fmt: skip
        self.stdout.write(f"{who} is {role} {where}")
