import re

from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from simple_history.models import HistoricalRecords

from .states import ACTIVE_STATES, FINAL_STATES, SLOT_STATES, Mode, State


def secret_variable(prefix: str, slug: str) -> str:
    """Where an application's secret is in the environment: prefix + the slug upper-cased,
    anything but A-Z and 0-9 made "_" (FC_HOOK_SECRET_DEMO_SHOP). Secrets never sit in the
    database."""
    return prefix + re.sub(r"[^A-Z0-9]", "_", slug.upper())


class Application(models.Model):
    """One application shipped by Fat Controller: a git remote and its merge slot."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    git_remote_url = models.CharField(
        max_length=500, help_text="Where the branches live; credentials, if any, by SSH keys."
    )
    default_branch = models.CharField(max_length=200, default="main")
    build_command = models.CharField(
        max_length=500,
        default="make test",
        help_text="Run in the candidate checkout, split like a shell would but never by one.",
    )
    build_timeout_seconds = models.PositiveIntegerField(default=3600)
    build_backend = models.CharField(
        max_length=20,
        choices=[("local", "Local build runner"), ("jenkins", "Jenkins")],
        default="local",
        help_text="Jenkins needs JENKINS_URL, JENKINS_USER and JENKINS_TOKEN in the environment.",
    )
    jenkins_job = models.CharField(
        max_length=200, blank=True, help_text="The parameterized job; empty means the slug."
    )
    build_hold_minutes = models.PositiveIntegerField(
        default=10,
        help_text="How long a failed build keeps the slot for its owner to retry or abandon.",
    )
    build_auto_retries = models.PositiveIntegerField(
        default=0, help_text="Failed builds retried automatically before holding the slot."
    )
    image_repository = models.CharField(
        max_length=300,
        blank=True,
        help_text="Where builds push the image, without a tag, e.g. "
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop; the build's image tag is added.",
    )
    phase_timeout_seconds = models.PositiveIntegerField(
        default=600, help_text="A rollout phase not complete by then fails and rolls back."
    )
    soak_seconds = models.PositiveIntegerField(
        default=60, help_text="How long the new release is watched after the last phase."
    )
    memory_guard = models.CharField(
        max_length=10,
        choices=[("refuse", "refuse"), ("warn", "warn")],
        default="refuse",
        help_text="What a revision that breaks the memory guard (no hard memory limit, a "
        "reservation above it, tasks that do not fit) does: refuse fails the deploy before "
        "anything changes; warn says so on the timeline and deploys.",
    )
    crash_loop = models.CharField(
        max_length=20,
        choices=[("restore", "restore"), ("scale_to_zero", "scale_to_zero"), ("report", "report")],
        default="restore",
        help_text="What a crash loop (tasks or containers of one service OOM-killed on two or "
        "more hosts within FC_CRASH_LOOP_WINDOW_SECONDS) outside a rollout does: restore puts "
        "back the revision that ran before the looping one; scale_to_zero stops the service; "
        "report only reports it. During a rollout the placement fails and is restored.",
    )
    locked = models.BooleanField(
        default=False, help_text="A locked application queues deploys but starts none."
    )
    lock_reason = models.CharField(max_length=500, blank=True)
    locked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    locked_at = models.DateTimeField(null=True, blank=True)
    # When the row last changed what the live pages show of it (a save, a lock, an unlock):
    # part of the polls' change cursor (deploys/live.py). The lock's update() sets it too.
    changed_at = models.DateTimeField(auto_now=True)
    # Every saved version of the row, with who saved it (README, "Who may do what"): a config
    # load, an admin edit. The lock is set by update(), so it is in the audit log, not here.
    history = HistoricalRecords()

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def jenkins_job_name(self) -> str:
        return self.jenkins_job or self.slug

    @property
    def hook_secret_variable(self) -> str:
        """The environment variable holding this application's build notification secret."""
        return secret_variable("FC_HOOK_SECRET_", self.slug)


class Deploy(models.Model):
    """One request to ship one branch of one application, by one person, in one mode."""

    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="deploys")
    branch = models.CharField(max_length=200)
    mode = models.CharField(max_length=20, choices=Mode.choices, default=Mode.DEPLOY)
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="deploys"
    )
    note = models.CharField(max_length=500, blank=True)
    state = models.CharField(max_length=30, choices=State.choices, default=State.QUEUED)
    head_sha = models.CharField(max_length=40, blank=True, help_text="The branch's head merged.")
    candidate_sha = models.CharField(max_length=40, blank=True)
    commits = models.JSONField(
        default=list,
        blank=True,
        help_text="What the candidate brings: commits not yet on the default branch, newest "
        "first, as {sha, author, subject}; read once, when the candidate is made.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When it took the slot.")
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    held_until = models.DateTimeField(
        null=True, blank=True, help_text="A failed build keeps the slot until then."
    )
    verify_until = models.DateTimeField(
        null=True, blank=True, help_text="The end of the soak after the last rollout phase."
    )
    step_lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker is at work on the state's step until then."
    )
    step_lease_holder = models.CharField(
        max_length=300,
        blank=True,
        default="",
        db_default="",
        help_text="Which process holds the step lease: host:pid:start time (deploys/leases.py).",
    )
    restore_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="restores",
        help_text="For a restore: the release whose revisions it puts back.",
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            # The merge slot: the database, not a Python lock, keeps it to one holder.
            models.UniqueConstraint(
                fields=["application"],
                condition=Q(state__in=sorted(SLOT_STATES)),
                name="one_slot_holder_per_application",
            ),
            # One deploy of a branch in flight at a time: a second click queues nothing.
            models.UniqueConstraint(
                fields=["application", "branch"],
                condition=Q(state__in=sorted(ACTIVE_STATES)),
                name="one_active_deploy_per_branch",
            ),
        ]
        indexes = [
            models.Index(fields=["application", "state", "id"]),
            # History: newest first, filtered by application, person or state.
            models.Index(fields=["application", "-id"], name="deploy_app_newest"),
            models.Index(fields=["requester", "-id"], name="deploy_requester_newest"),
            models.Index(fields=["state", "-id"], name="deploy_state_newest"),
            models.Index(fields=["-created_at"], name="deploy_created_newest"),
            # The dashboard: each application's recently finished deploys.
            models.Index(fields=["application", "-finished_at"], name="deploy_app_finished"),
            # The live polls: each application's latest change (deploys/live.py).
            models.Index(fields=["application", "-updated_at"], name="deploy_app_updated"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.application.slug}:{self.branch}"

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def holds_slot(self) -> bool:
        return self.state in SLOT_STATES

    @property
    def candidate_ref(self) -> str:
        return f"refs/fatcontroller/candidates/{self.pk}"


def touch(deploy_id: int) -> None:
    """Say the deploy changed, for the live polls (deploys/live.py), by its updated_at; never
    back in time: it is also the safety net's heartbeat and may be set ahead, to when a
    step's retry is due (deploys/steps.py), and moving it back would wake the net early."""
    Deploy.objects.filter(pk=deploy_id).update(
        updated_at=Greatest(F("updated_at"), Value(timezone.now()))
    )


class DeployEvent(models.Model):
    """What happened to a deploy: every change of state, and notes along the way."""

    deploy = models.ForeignKey(Deploy, on_delete=models.CASCADE, related_name="events")
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Empty when Fat Controller itself acted.",
    )
    from_state = models.CharField(max_length=30, choices=State.choices, blank=True)
    to_state = models.CharField(max_length=30, choices=State.choices)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.from_state or '-'} -> {self.to_state}: {self.message[:60]}"


class RolloutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    UPDATING = "updating", "Updating"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    ROLLING_BACK = "rolling_back", "Rolling back"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ROLLBACK_FAILED = "rollback_failed", "Rollback failed"


class ServiceRollout(models.Model):
    """One placement's part in a deploy's rollout: what ran before, what this deploy made.

    The placement's ledger (clusters/targets/base.py): its target writes the revision that
    ran before before the placement is touched, so a restore, even by another worker after
    this one died, brings back exactly it. The strings are the target's own (on ECS, task
    definition ARNs and deployment ids); `detail` holds anything else a target keeps.
    """

    deploy = models.ForeignKey(Deploy, on_delete=models.CASCADE, related_name="rollouts")
    placement = models.ForeignKey(
        "clusters.Placement", on_delete=models.PROTECT, related_name="rollouts"
    )
    phase = models.PositiveIntegerField()
    status = models.CharField(
        max_length=20, choices=RolloutStatus.choices, default=RolloutStatus.PENDING
    )
    revision_before = models.CharField(max_length=300, blank=True)
    revision_made = models.CharField(max_length=300, blank=True)
    image = models.CharField(max_length=500, blank=True)
    start_handle = models.CharField(max_length=100, blank=True)
    restore_handle = models.CharField(max_length=100, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    running_count = models.PositiveIntegerField(default=0)
    desired_count = models.PositiveIntegerField(default=0)
    message = models.CharField(max_length=1000, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["deploy", "phase", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["deploy", "placement"], name="one_rollout_per_placement_per_deploy"
            )
        ]

    def __str__(self) -> str:
        return f"deploy {self.deploy_id}: {self.placement} ({self.status})"

    @property
    def commit(self) -> str:
        """The commit the image was built from (the Ledger protocol): the deploy's candidate."""
        return self.deploy.candidate_sha

    def write(self, **fields) -> None:
        """Set the fields here and in the database at once (the Ledger protocol)."""
        for name, value in fields.items():
            setattr(self, name, value)
        ServiceRollout.objects.filter(pk=self.pk).update(**fields)
        # A rollout's progress is the deploy's: the live polls see it by the deploy's
        # updated_at (deploys/live.py), one small update more per rollout write.
        touch(self.deploy_id)

    # Revisions as people say them: "web:42", not the whole ARN (the last part of a path).
    @property
    def previous_revision(self) -> str:
        return self.revision_before.rsplit("/", 1)[-1]

    @property
    def new_revision(self) -> str:
        return self.revision_made.rsplit("/", 1)[-1]


class Role(models.TextChoices):
    """What a person may do with an application (deploys/roles.py decides), lowest first."""

    VIEWER = "viewer", "viewer: reads"
    DEPLOYER = "deployer", "deployer: queues, acts on their own deploys, restores releases"
    MAINTAINER = "maintainer", "maintainer: locks, moves migration phases, acts on any deploy"


class RoleGrant(models.Model):
    """A role given to a user or to a group, on one application or (application empty) on
    all of them. Staff need none: they administer everything."""

    role = models.CharField(max_length=20, choices=Role.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
        related_name="role_grants",
    )  # fmt: skip
    group = models.ForeignKey(
        "auth.Group", null=True, blank=True, on_delete=models.CASCADE, related_name="role_grants"
    )
    application = models.ForeignKey(
        Application, null=True, blank=True, on_delete=models.CASCADE, related_name="role_grants",
        help_text="Empty: every application.",
    )  # fmt: skip
    granted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, group__isnull=True)
                | Q(user__isnull=True, group__isnull=False),
                name="role_grant_to_a_user_or_a_group",
            ),
            models.UniqueConstraint(
                fields=["user", "group", "application"],
                nulls_distinct=False,
                name="one_role_grant_per_holder_and_application",
            ),
        ]

    def __str__(self) -> str:
        holder = f"user {self.user}" if self.user_id else f"group {self.group}"
        where = self.application.slug if self.application_id else "every application"
        return f"{holder}: {self.role} on {where}"
