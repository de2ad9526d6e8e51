"""Build notifications: a Jenkins job's post step tells us a build ended.

The notification only says "look now": the build's status is always read from Jenkins by
sync_build, so a forged or repeated notification cannot pass a build, and handling it twice
does nothing new. It is authenticated with the application's shared secret, taken from the
environment variable Application.hook_secret_variable and compared in constant time.
"""

import hmac
import logging
import os
import re
import secrets

from deploys import dispatch
from deploys.models import Application
from fatcontroller.converters import in_id_range

from .models import Build, BuildStatus

log = logging.getLogger(__name__)

AUTH_HEADER = "X-Fatcontroller-Secret"
# Compared against when the application is unknown, so the answer takes as long either way.
_UNMATCHABLE = secrets.token_hex(32)
# At most 19 digits: int() of a longer string is slow, and too large to be an id anyway.
_DIGITS = re.compile(r"[0-9]{1,19}")


class HookRejected(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def accept_build_notification(payload: object, secret: str) -> Build:
    """Check a notification and ask for the build's sync; returns the build it names."""
    if not isinstance(payload, dict):
        raise HookRejected(400, "the body must be a JSON object")
    slug = payload.get("application")
    application = Application.objects.filter(slug=slug).first() if isinstance(slug, str) else None
    expected = os.environ.get(application.hook_secret_variable, "") if application else ""
    matches = hmac.compare_digest(secret.encode(), (expected or _UNMATCHABLE).encode())
    if application is None or not expected or not matches:
        log.warning("build notification refused for application %r", slug)
        raise HookRejected(403, "unknown application or wrong secret")

    deploy_id, attempt = payload.get("deploy_id"), payload.get("attempt")
    if not _is_number(deploy_id) or not _is_number(attempt):
        raise HookRejected(
            400, "deploy_id and attempt must be numbers (FC_DEPLOY_ID, FC_BUILD_ATTEMPT)"
        )
    build = (
        Build.objects.filter(
            deploy_id=int(deploy_id), attempt=int(attempt), deploy__application=application
        )
        .select_related("deploy")
        .first()
    )
    if build is None:
        raise HookRejected(404, f"{application.slug} has no build {attempt} of deploy {deploy_id}")
    if build.status == BuildStatus.RUNNING:
        dispatch.send_task("builds.tasks.sync_build", build.deploy_id)
    return build


def _is_number(value: object) -> bool:
    """A whole number that can name a row: 1 to 2**63 - 1, as a JSON number or ASCII digits.

    Bounded because a larger one reaches SQLite as an OverflowError; ASCII because
    str.isdigit() says yes to "²", which int() refuses.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return in_id_range(value)
    return isinstance(value, str) and bool(_DIGITS.fullmatch(value)) and in_id_range(int(value))
