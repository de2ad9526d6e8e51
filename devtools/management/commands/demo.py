import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from appconfig.apply import apply_app_config
from clusters.models import MigrationPlan
from deploys.models import Application
from devtools import demo_boxes
from devtools.demo import (
    BUILD_COMMAND,
    CONFIG_FILE,
    DEMO_SLUG,
    create_demo_remote,
    demo_config,
)
from devtools.demo_migration import put_mid_migration

FIRST_USER = "admin"


class Command(BaseCommand):
    help = (
        "Load the demo: a demo application on a local git remote, set up for ECS and its "
        "legacy deploy jobs by devtools/demo-shop.fatcontroller.yml, its migration plan put "
        "mid-migration when the plan is new, and a first login. Where a Docker engine answers "
        "(DOCKER_HOST, or the default socket), the Docker demo too: demo-boxes, deployed as "
        "containers on that engine by devtools/demo-boxes.fatcontroller.yml."
    )

    def handle(self, *args, **options):
        remote = create_demo_remote(settings.VAR_DIR / "demo" / "demo-shop.git")
        app, created = Application.objects.update_or_create(
            slug=DEMO_SLUG,
            defaults={"git_remote_url": str(remote)},
            create_defaults={
                "name": "Demo shop",
                "git_remote_url": str(remote),
                "build_command": BUILD_COMMAND,
            },
        )
        self.stdout.write(
            f"{'Created' if created else 'Updated'} application {app.slug} ({remote})"
        )
        # The rest (build, image repository, rollout pacing, services and placements) is the
        # file's: loading it again changes nothing, or puts back what the file says.
        config = demo_config()
        with transaction.atomic():  # a plan the file makes gets its history, or neither
            report = apply_app_config(config)
            plan = MigrationPlan.objects.filter(application=app).first()
            moved = put_mid_migration(plan) if plan is not None else []
        for line in report.lines():
            self.stdout.write(line)
        for warning in report.warnings:
            self.stderr.write(f"{CONFIG_FILE.name}: {warning}")
        if moved:
            self.stdout.write("Put the new migration plan mid-migration:")
            for line in moved:
                self.stdout.write(line)
        self._docker_demo()
        self._first_login()

    def _docker_demo(self):
        host = demo_boxes.engine_host()
        if not demo_boxes.engine_answers(host):
            self.stdout.write(f"No Docker engine answers at {host}: the Docker demo is not set up")
            return
        remote = demo_boxes.create_boxes_remote(settings.VAR_DIR / "demo" / "demo-boxes.git")
        config = demo_boxes.boxes_config(host, remote)
        _app, created = Application.objects.get_or_create(
            slug=demo_boxes.DEMO_SLUG,
            defaults={
                "name": config.name or demo_boxes.DEMO_SLUG,
                "git_remote_url": str(remote),
                "build_command": config.build_command,
            },
        )
        if created:
            self.stdout.write(f"Created application {demo_boxes.DEMO_SLUG} ({remote}) on {host}")
        with transaction.atomic():
            report = apply_app_config(config)
        for line in report.lines():
            self.stdout.write(line)
        for warning in report.warnings:
            self.stderr.write(f"{demo_boxes.CONFIG_FILE.name}: {warning}")

    def _first_login(self):
        # The password is kept beside the database (var/, never committed) so every
        # `make run` can show it again.
        login_file = settings.VAR_DIR / "first-login.txt"
        User = get_user_model()
        if not User.objects.filter(username=FIRST_USER).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser(FIRST_USER, "", password)
            login_file.write_text(f"{FIRST_USER} {password}\n")
            login_file.chmod(0o600)
        if login_file.exists():
            username, password = login_file.read_text().split()
            user = User.objects.filter(username=username).first()
            if user and user.check_password(password):
                self.stdout.write(
                    self.style.SUCCESS(f"Log in as {username} with password {password}")
                )
                return
            login_file.unlink()  # the password was changed since: forget the old one
        self.stdout.write(
            f"Log in as {FIRST_USER}; reset with: manage.py changepassword {FIRST_USER}"
        )
