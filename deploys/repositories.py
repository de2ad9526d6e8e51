"""An application's git repository as Fat Controller works with it: its own clone under
FC_WORK_DIR, the application's remote and default branch, the git timeout (lib/git.py does
the work)."""

from __future__ import annotations

from django.conf import settings

from lib.git import Repository

from .models import Application


def repository_for(application: Application) -> Repository:
    return Repository(
        workdir=settings.FC_WORK_DIR / application.slug,
        remote_url=application.git_remote_url,
        default_branch=application.default_branch,
        timeout=settings.FC_GIT_TIMEOUT,
    )
