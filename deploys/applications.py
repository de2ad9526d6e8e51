"""An application as its pages show it: its settings, where its services run and what they
run now, and its lock.

What a placement runs "now" is what the newest finished deploy that touched it left there,
read from the ServiceRollout rows, never from AWS: a page must not wait on ECS. A Docker
placement's containers are the one thing asked of an engine, at once for all of them and with
a short timeout (docker_now.py), so an engine that does not answer costs its row only. Deploys
take the merge slot one at a time, first queued first, so the newest deploy is the one with
the highest id. A rollout still pending when its deploy ended never touched its service.

Locking and unlocking go through here so the views and the API share one set of rules.
Bad input raises DeployRequestError (field -> messages) and changes nothing; a reason with a
NUL or a lone surrogate is bad input (fatcontroller.text decides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import groupby

from django.db import transaction
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.shortcuts import get_object_or_404

from accounts import audit
from clusters import migration, targets
from clusters.models import Placement, PlacementKind, Service
from fatcontroller.text import text_problem
from lib.durations import in_words
from lib.urls import redact

from . import roles, slot
from .actions import DeployRequestError
from .docker_now import EngineAnswer, docker_now
from .models import Application, Deploy, DeployEvent, RolloutStatus, ServiceRollout
from .states import ACTIVE_STATES, FINAL_STATES, SLOT_STATES, State

log = logging.getLogger(__name__)

MAX_REASON_LENGTH = 500
# What a crash loop outside a rollout does, as the application page says it.
CRASH_LOOP_WORDS = {
    "restore": "restores the revision that ran before",
    "scale_to_zero": "scales the service to zero",
    "report": "is reported only",
}

# What a placement's current revision is, as the page says it.
DEPLOYED = "deployed"  # the newest finished deploy rolled it out: its new revision
ROLLED_BACK = "rolled_back"  # the newest finished deploy put the one before back
UNKNOWN = "unknown"  # the newest finished deploy left it in doubt (a failed rollback)
NEVER = "never"  # no finished deploy has touched it
RECORDED = "recorded"  # a legacy job not deployed by Fat Controller yet: its recorded version
NOT_TRACKED = "not_tracked"  # a kind of placement no target drives: no revisions kept


class AlreadyLocked(Exception):
    """Locking a locked application would overwrite who locked it and why: refused."""

    def __init__(self, application: Application):
        self.application = application
        who = application.locked_by.get_username() if application.locked_by else "fatcontroller"
        super().__init__(
            f"{application.slug} is already locked by {who}: {application.lock_reason}. "
            "Unlock it first to lock it for another reason."
        )


# ---------------------------------------------------------------------------------- lock


def clean_reason(reason) -> str:
    """The reason for a lock, stripped; DeployRequestError when it is missing, too long or
    not text a database can hold."""
    if reason is None or (isinstance(reason, str) and not reason.strip()):
        raise DeployRequestError({"reason": ["A reason is required: say why deploys should wait."]})
    if not isinstance(reason, str):
        raise DeployRequestError({"reason": ["The reason must be text."]})
    if problem := text_problem(reason):  # SQLite would store a NUL; PostgreSQL would fail
        raise DeployRequestError({"reason": [problem]})
    reason = reason.strip()
    if len(reason) > MAX_REASON_LENGTH:
        raise DeployRequestError(
            {
                "reason": [
                    f"A reason is at most {MAX_REASON_LENGTH} characters ({len(reason)} given)."
                ]
            }
        )
    return reason


def lock_application(application: Application, *, actor, reason) -> Application:
    """Lock the application: deploys still queue but none takes the slot until it is unlocked.

    A deploy already holding the slot carries on. Returns the application as it is now.
    """
    roles.check(actor, "lock", application)
    reason = clean_reason(reason)
    with transaction.atomic():
        current = Application.objects.select_for_update().get(pk=application.pk)
        if current.locked:
            raise AlreadyLocked(current)
        slot.lock(current, actor=actor, reason=reason)
        _note_on_deploys(current, actor, f"{_name(actor)} locked {current.slug}: {reason}")
        audit.record(
            actor, audit.LOCK, application=current, subject=current.slug, change={"reason": reason}
        )
    log.info("%s locked %s: %s", _name(actor), application.slug, reason)
    application.refresh_from_db()
    return application


def unlock_application(application: Application, *, actor) -> bool:
    """Unlock the application; the oldest queued deploy takes the free slot after commit.

    Returns False when it was not locked (a double click, a page out of date).
    """
    roles.check(actor, "unlock", application)
    with transaction.atomic():
        current = Application.objects.select_for_update().get(pk=application.pk)
        if not current.locked:
            application.refresh_from_db()
            return False
        was = f"locked by {_name(current.locked_by)}: {current.lock_reason}"
        slot.unlock(current)  # hands the slot on once this commits
        _note_on_deploys(current, actor, f"{_name(actor)} unlocked {current.slug} (it was {was})")
        audit.record(
            actor, audit.UNLOCK, application=current, subject=current.slug, change={"was": was}
        )
    log.info("%s unlocked %s (it was %s)", _name(actor), application.slug, was)
    application.refresh_from_db()
    return True


def _note_on_deploys(application: Application, actor, message: str) -> None:
    """Say it on the timeline of every deploy waiting or in flight: they are the ones it
    holds up or lets go, and the timeline is where their people look."""
    DeployEvent.objects.bulk_create(
        DeployEvent(
            deploy_id=deploy_id, actor=actor, from_state=state, to_state=state, message=message
        )
        for deploy_id, state in Deploy.objects.filter(
            application=application, state__in=ACTIVE_STATES
        ).values_list("id", "state")
    )


def _name(user) -> str:
    return user.get_username() if user is not None else "fatcontroller"


def lock_state(application: Application) -> dict:
    """The application's lock as the API answers it."""
    return {
        "application": application.slug,
        "locked": application.locked,
        "lock_reason": application.lock_reason,
        "locked_by": application.locked_by.get_username() if application.locked_by else None,
        "locked_at": application.locked_at,
    }


# -------------------------------------------------------------------------- the list page


@dataclass
class ApplicationSummary:
    application: Application
    holder: Deploy | None
    waiting: int


def application_summaries() -> list[ApplicationSummary]:
    """Every application with its slot holder and how many wait: three queries in all."""
    applications = list(Application.objects.select_related("locked_by"))
    holders = {
        d.application_id: d
        for d in Deploy.objects.filter(state__in=SLOT_STATES).select_related("requester")
    }
    waiting = dict(
        Deploy.objects.filter(state=State.QUEUED)
        .values("application_id")
        .annotate(n=Count("id"))
        .values_list("application_id", "n")
        .order_by()
    )
    return [
        ApplicationSummary(app, holders.get(app.pk), waiting.get(app.pk, 0)) for app in applications
    ]


# ------------------------------------------------------------------ the application page


@dataclass
class CurrentRevision:
    kind: str  # DEPLOYED, ROLLED_BACK, UNKNOWN, NEVER or NOT_TRACKED
    revision: str = ""
    rollout: ServiceRollout | None = None

    @property
    def deploy(self) -> Deploy | None:
        return self.rollout.deploy if self.rollout else None


@dataclass
class PlacementRow:
    placement: Placement
    current: CurrentRevision
    engine: EngineAnswer | None = None  # a Docker placement's containers, as its engine says now

    @property
    def unused(self) -> str:
        """Why deploys leave this placement alone now ('' when they touch it)."""
        placement = self.placement
        if placement.retired_at is not None:
            return f"retired on {placement.retired_at:%Y-%m-%d}: kept for history only"
        if not targets.drives(placement.kind) or migration.in_use(placement):
            return ""
        phase = placement.service.migration_phase
        if phase is None:
            return "not deployed: the service is in no migration plan, so only ECS is"
        return f"not deployed now: its migration phase is {phase.get_state_display().lower()}"


@dataclass
class ServiceRow:
    service: Service
    health_check_url: str
    placements: list[PlacementRow] = field(default_factory=list)


@dataclass
class Phase:
    number: int
    services: list[ServiceRow]


@dataclass
class ApplicationPage:
    application: Application
    settings: list[tuple[str, str]]
    phases: list[Phase]
    holder: Deploy | None
    waiting: int
    # The waiting deploys, first in line first: the dashboard's row shows only the next.
    queue: list[Deploy] = field(default_factory=list)


def current_revision(rollout: ServiceRollout | None, placement: Placement) -> CurrentRevision:
    """What `rollout`, the newest finished one that touched the placement, left it on."""
    if not targets.drives(placement.kind):
        return CurrentRevision(NOT_TRACKED)
    if rollout is None:
        if placement.kind == PlacementKind.LEGACY and placement.legacy_version:
            return CurrentRevision(RECORDED, placement.legacy_version)
        return CurrentRevision(NEVER)
    if rollout.status == RolloutStatus.DONE and rollout.revision_made:
        return CurrentRevision(DEPLOYED, rollout.new_revision, rollout)
    if rollout.status == RolloutStatus.ROLLED_BACK and rollout.revision_before:
        return CurrentRevision(ROLLED_BACK, rollout.previous_revision, rollout)
    # A failed rollback, or a deploy that ended with the service half way: only the deploy's
    # timeline (or ECS) can say what runs.
    return CurrentRevision(UNKNOWN, "", rollout)


def latest_finished_rollout_ids():
    """Per placement (OuterRef "pk"): the id of the newest finished rollout that touched it.

    A correlated subquery, so one query answers for every placement, on SQLite and
    PostgreSQL alike.
    """
    return Subquery(
        ServiceRollout.objects.filter(placement=OuterRef("pk"), deploy__state__in=FINAL_STATES)
        .exclude(status=RolloutStatus.PENDING)
        .order_by("-deploy_id")
        .values("pk")[:1]
    )


def application_page(slug: str) -> ApplicationPage:
    """Everything the application's page shows, in a fixed number of queries (404 if none)."""
    application = get_object_or_404(Application.objects.select_related("locked_by"), slug=slug)
    placements = (
        Placement.objects.select_related("cluster", "service__migration_phase")
        .annotate(latest_rollout_id=latest_finished_rollout_ids())
        .order_by("kind", "cluster__name", "ecs_service_name", "legacy_job", "id")
    )
    services = list(
        Service.objects.filter(application=application)
        .order_by("phase", "name")
        .prefetch_related(Prefetch("placements", queryset=placements))
    )
    rollout_ids = {
        p.latest_rollout_id
        for s in services
        for p in s.placements.all()
        if p.latest_rollout_id is not None
    }
    rollouts = (
        {
            r.pk: r
            for r in ServiceRollout.objects.filter(pk__in=rollout_ids).select_related("deploy")
        }
        if rollout_ids
        else {}
    )
    phases = [
        Phase(
            number,
            [
                ServiceRow(
                    service,
                    redact(service.health_check_url),
                    [
                        PlacementRow(p, current_revision(rollouts.get(p.latest_rollout_id), p))
                        for p in service.placements.all()
                    ],
                )
                for service in in_phase
            ],
        )
        for number, in_phase in groupby(services, key=lambda s: s.phase)
    ]
    rows = [row for phase in phases for service in phase.services for row in service.placements]
    engines = docker_now([row.placement for row in rows])
    for row in rows:
        row.engine = engines.get(row.placement.pk)
    holder, waiting = slot.queue_of(application)
    return ApplicationPage(
        application=application,
        settings=settings_summary(application),
        phases=phases,
        holder=holder,
        waiting=len(waiting),
        queue=waiting,
    )


def settings_summary(application: Application) -> list[tuple[str, str]]:
    """The settings worth seeing at a glance, as (label, value); never a secret."""
    backend = application.get_build_backend_display()
    if application.build_backend == "jenkins":
        backend += f" (job {application.jenkins_job_name})"
    return [
        ("Git remote", redact(application.git_remote_url)),
        ("Default branch", application.default_branch),
        ("Build backend", backend),
        ("Build timeout", in_words(application.build_timeout_seconds)),
        ("Automatic build retries", str(application.build_auto_retries)),
        ("Hold window after a failed build", in_words(application.build_hold_minutes * 60)),
        ("Image repository", application.image_repository or "not set"),
        ("Phase timeout", in_words(application.phase_timeout_seconds)),
        ("Soak", in_words(application.soak_seconds)),
        (
            "Memory guard",
            "refuses a revision that breaks it"
            if application.memory_guard == "refuse"
            else "warns on the timeline, and deploys",
        ),
        ("Crash loop outside a rollout", CRASH_LOOP_WORDS[application.crash_loop]),
    ]
