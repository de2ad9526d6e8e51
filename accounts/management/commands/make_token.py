"""manage.py make_token USER --name NAME [--days N]: an API token for USER, printed once."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import tokens


class Command(BaseCommand):
    help = "Make an API token (hashed at rest, with an expiry) and print its key once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what it is for")
        parser.add_argument("--days", type=int, default=None, help="default: FC_TOKEN_DAYS")

    def handle(self, *args, username, name, days, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"there is no user called {username!r}")
        try:
            token, key = tokens.make(user, name, days)
        except tokens.TokenRefused as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"{token.name} for {username}, until {token.expires_at:%Y-%m-%d}:")
        self.stdout.write(key)
