import sys

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts import audit
from appconfig.apply import apply_app_config
from appconfig.errors import ConfigError
from appconfig.parse import parse_app_config
from deploys.models import Application


class Command(BaseCommand):
    help = (
        "Load an application's configuration file (docs/app-config.md): its settings, "
        "clusters, services and placements. Everything or nothing is changed."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the YAML file; - reads standard input")
        parser.add_argument(
            "--create", action="store_true", help="create the application if it does not exist"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="validate and show what would change, without changing anything",
        )

    def handle(self, *args, path, create, dry_run, **options):
        try:
            if path == "-":
                text = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as file:
                    text = file.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from None
        try:
            config = parse_app_config(text)  # a bad file is told without a database
            # The audit entry in the change's transaction: a load that fails leaves none.
            with transaction.atomic():
                report = apply_app_config(config, create=create, dry_run=dry_run)
                if not dry_run:
                    audit.record(
                        None,
                        audit.CONFIG_LOAD,
                        application=Application.objects.filter(slug=config.slug).first(),
                        subject=f"{config.slug} from {path}",
                        change={"report": report.lines()},
                    )
        except ConfigError as exc:
            count = len(exc.errors)
            raise CommandError(
                f"{path}: {count} error{'s' if count != 1 else ''}, nothing was changed:\n"
                + "\n".join(f"  {error}" for error in exc.errors)
            ) from None
        for warning in report.warnings:
            self.stderr.write(self.style.WARNING(f"warning: {warning}"))
        self.stdout.write(str(report))
