"""The admin of clusters, services, placements and migration plans.

Applications configured by a file (docs/app-config.md) are best changed there: loading the
file again puts back what it says. What a migration plan or a running deploy holds cannot be
changed here at all: while a placement is in use (clusters/placement_guard.py) its kind and
where it runs are read-only and it cannot be deleted, a service's migration phase is always
read-only (the file's migration section sets it), and a phase's state moves only on the
migration page or through the API, which check the rules (clusters/migration.py). Services,
placements and clusters keep every saved version: each one's History button shows them.
"""

from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import escape, format_html
from simple_history.admin import SimpleHistoryAdmin

from fatcontroller.readonly_admin import ReadOnlyAdmin

from .models import (
    Cluster,
    ClusterReport,
    ContainerInstanceState,
    LegacyRun,
    MigrationMove,
    MigrationPhase,
    MigrationPlan,
    MigrationState,
    Placement,
    Service,
)
from .placement_guard import WHERE_TO_CHANGE, PlacementUse, uses_of

# What a placement is and where it runs: fixed while the placement is in use.
WHERE_FIELDS = ["kind", "cluster", "ecs_service_name", "legacy_job"]
PLAN_SETS_PHASE = (
    "Set by the migration section of the application's config file (docs/app-config.md); "
    "a phase's state moves on the migration page (/applications/{slug}/migration/)."
)


def _reasons(uses: list[PlacementUse]) -> list[str]:
    """Why these placements are fixed, each reason once, in order."""
    reasons = []
    for use in uses:
        for reason in use.reasons(planned_too=True):
            if reason not in reasons:
                reasons.append(reason)
    return reasons


def _fixed_note(reasons: list[str], slug: str) -> str:
    """The help beside fixed fields: why, and where to change them (escaped: names are data)."""
    return format_html(
        "Read-only while {}. To change what it is or where it runs, {}.",
        " and ".join(reasons),
        WHERE_TO_CHANGE.format(slug=slug),
    )


def _service_uses(service: Service) -> list[PlacementUse]:
    return list(uses_of(service.placements.all()).values())


def _service_reasons(service: Service) -> list[str]:
    reasons = _reasons(_service_uses(service))
    if service.migration_phase_id and not service.placements.exists():
        phase = service.migration_phase
        reasons.append(f"it is in phase {phase.position} ({phase.name}) of the migration plan")
    return reasons


def _refuse_delete(request, what: str, reasons: list[str], slug: str, url: str):
    messages.error(
        request,
        f"{what} cannot be deleted while {' and '.join(reasons)}: "
        + WHERE_TO_CHANGE.format(slug=slug),
    )
    return HttpResponseRedirect(url)


def _refused_in(result, request, refused: list[str]):
    """get_deleted_objects' answer with the objects in use refused, each saying why."""
    deleted, counts, perms_needed, protected = result
    if refused:
        protected = [*protected, *refused]
        # has_delete_permission refuses an object in use, which would read as a lack of
        # permission: it is said above, with why, instead.
        for model in (Service, Placement):
            if request.user.has_perm(f"clusters.delete_{model._meta.model_name}"):
                perms_needed.discard(model._meta.verbose_name)
    return deleted, counts, perms_needed, protected


class PlacementInline(admin.TabularInline):
    model = Placement
    extra = 0
    fields = ["kind", "cluster", "ecs_service_name", "container_name", "legacy_job"]
    autocomplete_fields = ["cluster"]

    # A service whose placements are in use shows them read-only, with no row added or
    # deleted: the service's page says why (ServiceAdmin.get_fieldsets).
    def _fixed(self, request, service) -> bool:
        if service is None:
            return False
        cache = request.__dict__.setdefault("_fixed_services", {})
        if service.pk not in cache:
            cache[service.pk] = bool(_service_reasons(service))
        return cache[service.pk]

    def get_readonly_fields(self, request, obj=None):
        return WHERE_FIELDS if self._fixed(request, obj) else []

    def has_add_permission(self, request, obj=None):
        return not self._fixed(request, obj) and super().has_add_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._fixed(request, obj) and super().has_delete_permission(request, obj)


@admin.register(Service)
class ServiceAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "application",
        "process_type",
        "phase",
        "migration_phase",
        "placement_count",
    ]
    list_filter = ["application", "process_type", "phase"]
    list_select_related = ["application", "migration_phase"]
    search_fields = ["name", "application__slug"]
    ordering = ["application__slug", "phase", "name"]
    readonly_fields = ["migration_phase"]
    inlines = [PlacementInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(placement_count=Count("placements"))

    @admin.display(description="placements", ordering="placement_count")
    def placement_count(self, service):
        return service.placement_count

    def get_fieldsets(self, request, obj=None):
        slug = obj.application.slug if obj else "<slug>"
        description = escape(PLAN_SETS_PHASE.format(slug=slug))
        if obj is not None:
            reasons = _service_reasons(obj)
            if reasons:
                description = format_html(
                    "{} Its placements: {}", description, _fixed_note(reasons, slug)
                )
        return [
            (
                None,
                {"fields": ["application", "name", "process_type", "phase", "health_check_url"]},
            ),
            ("Migration", {"fields": ["migration_phase"], "description": description}),
        ]

    def has_delete_permission(self, request, obj=None):
        if obj is not None and _service_reasons(obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        service = self.get_object(request, object_id)
        reasons = _service_reasons(service) if service else []
        if reasons:
            url = reverse("admin:clusters_service_change", args=[service.pk])
            return _refuse_delete(
                request, f"Service {service}", reasons, service.application.slug, url
            )
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        refused = []
        for service in objs:
            reasons = _service_reasons(service)
            if reasons:
                refused.append(f"Service {service}: in use while {' and '.join(reasons)}")
        return _refused_in(super().get_deleted_objects(objs, request), request, refused)


@admin.register(Placement)
class PlacementAdmin(SimpleHistoryAdmin):
    list_display = [
        "service",
        "application",
        "phase",
        "kind",
        "cluster",
        "ecs_service_name",
        "container_name",
        "legacy_job",
        "retired_at",
    ]
    list_filter = ["kind", "cluster", "service__application", "service__process_type"]
    list_select_related = ["service__application", "cluster"]
    search_fields = [
        "service__name",
        "service__application__slug",
        "ecs_service_name",
        "container_name",
        "legacy_job",
    ]
    autocomplete_fields = ["service", "cluster"]
    fields = [
        "service",
        "kind",
        "cluster",
        "ecs_service_name",
        "container_name",
        "legacy_job",
        "legacy_version",
        "retired_at",
    ]

    @admin.display(description="application", ordering="service__application__slug")
    def application(self, placement):
        return placement.service.application.slug

    @admin.display(description="phase", ordering="service__phase")
    def phase(self, placement):
        return placement.service.phase

    def _reasons(self, request, placement) -> list[str]:
        cache = request.__dict__.setdefault("_fixed_placements", {})
        if placement.pk not in cache:
            cache[placement.pk] = _reasons(list(uses_of([placement]).values()))
        return cache[placement.pk]

    def get_readonly_fields(self, request, obj=None):
        # Retirement is the migration's (a phase done); never undone by hand.
        if obj is not None and self._reasons(request, obj):
            return ["service", *WHERE_FIELDS, "retired_at"]
        return ["retired_at"]

    def get_fieldsets(self, request, obj=None):
        if obj is None or not self._reasons(request, obj):
            return [(None, {"fields": self.fields})]
        where = ["service", *WHERE_FIELDS]
        note = _fixed_note(self._reasons(request, obj), obj.service.application.slug)
        return [
            ("What it is and where it runs", {"fields": where, "description": note}),
            (None, {"fields": [f for f in self.fields if f not in where]}),
        ]

    def has_delete_permission(self, request, obj=None):
        if obj is not None and self._reasons(request, obj):
            return False
        return super().has_delete_permission(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        placement = self.get_object(request, object_id)
        reasons = self._reasons(request, placement) if placement else []
        if reasons:
            url = reverse("admin:clusters_placement_change", args=[placement.pk])
            return _refuse_delete(
                request,
                f"Placement {placement}",
                reasons,
                placement.service.application.slug,
                url,
            )
        return super().delete_view(request, object_id, extra_context)

    def get_deleted_objects(self, objs, request):
        refused = [
            f"Placement {use.placement}: in use while {' and '.join(use.reasons(planned_too=True))}"
            for use in uses_of(objs).values()
            if use.reasons(planned_too=True)
        ]
        return _refused_in(super().get_deleted_objects(objs, request), request, refused)


@admin.register(Cluster)
class ClusterAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "region",
        "arn",
        "drain_disconnected",
        "reserved_memory_minimum",
        "placement_count",
    ]
    list_filter = ["region", "drain_disconnected"]
    search_fields = ["name", "arn"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(placement_count=Count("placements"))

    @admin.display(description="placements", ordering="placement_count")
    def placement_count(self, cluster):
        return cluster.placement_count


# Migration plans. A phase's state is moved only by clusters.migration.move (the migration
# page and the API), which checks the rules and records who and why.

STATE_MOVES_ELSEWHERE = (
    "Moved only on the migration page (/applications/{slug}/migration/) or through the API, "
    "which check the rules and record who moved it and why."
)


def _started(phase: MigrationPhase) -> bool:
    return phase.state != MigrationState.PLANNED


class MigrationPhaseInline(admin.TabularInline):
    model = MigrationPhase
    extra = 0
    fields = ["position", "name", "state", "state_since", "service_names"]
    readonly_fields = ["state", "state_since", "service_names"]

    @admin.display(description="services")
    def service_names(self, phase):
        return ", ".join(phase.services.order_by("name").values_list("name", flat=True))

    def get_readonly_fields(self, request, obj=None):
        # A plan with a started phase is changed only by its config file, which checks it.
        if obj is not None and obj.phases.exclude(state=MigrationState.PLANNED).exists():
            return ["position", "name", *self.readonly_fields]
        return self.readonly_fields

    def has_add_permission(self, request, obj=None):
        return False  # phases come from the config file's migration section

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MigrationPlan)
class MigrationPlanAdmin(admin.ModelAdmin):
    list_display = ["application", "proof_deploys", "proof_hours", "phase_count"]
    list_select_related = ["application"]
    inlines = [MigrationPhaseInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(phase_count=Count("phases"))

    @admin.display(description="phases", ordering="phase_count")
    def phase_count(self, plan):
        return plan.phase_count

    def get_readonly_fields(self, request, obj=None):
        return ["application"]

    def has_add_permission(self, request):
        return False  # a plan comes from the config file's migration section, with its phases

    def has_delete_permission(self, request, obj=None):
        if obj is not None and any(_started(p) for p in obj.phases.all()):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(MigrationPhase)
class MigrationPhaseAdmin(admin.ModelAdmin):
    list_display = ["plan", "position", "name", "state", "state_since"]
    list_filter = ["state", "plan__application"]
    list_select_related = ["plan__application"]
    fields = ["plan", "position", "name", "state", "state_since", "service_names"]

    @admin.display(description="services")
    def service_names(self, phase):
        return ", ".join(phase.services.order_by("name").values_list("name", flat=True))

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and _started(obj):
            return ["plan", "position", "name", "state", "state_since", "service_names"]
        return ["plan", "state", "state_since", "service_names"]

    def get_fieldsets(self, request, obj=None):
        slug = obj.plan.application.slug if obj else "<slug>"
        return [
            (None, {"fields": ["plan", "position", "name", "service_names"]}),
            (
                "State",
                {
                    "fields": ["state", "state_since"],
                    "description": escape(STATE_MOVES_ELSEWHERE.format(slug=slug)),
                },
            ),
        ]

    def has_add_permission(self, request):
        return False  # phases come from the config file's migration section

    def has_delete_permission(self, request, obj=None):
        if obj is not None and _started(obj):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(MigrationMove)
class MigrationMoveAdmin(ReadOnlyAdmin):
    list_display = ["at", "phase", "from_state", "to_state", "actor_name", "forced", "reason"]
    list_filter = ["to_state", "forced", "phase__plan__application"]
    list_select_related = ["phase__plan__application"]


@admin.register(LegacyRun)
class LegacyRunAdmin(ReadOnlyAdmin):
    list_display = [
        "triggered_at",
        "placement",
        "purpose",
        "version",
        "build_number",
        "result",
        "finished_at",
    ]
    list_filter = ["purpose", "result"]
    list_select_related = ["placement__service__application"]
    search_fields = ["placement__legacy_job", "version", "request"]


# Cluster health (clusters/health): written by the checks, read here until the cluster page.


@admin.register(ClusterReport)
class ClusterReportAdmin(ReadOnlyAdmin):
    list_display = ["opened_at", "cluster", "kind", "subject", "drained", "closed_at", "message"]
    list_filter = ["kind", "cluster", ("closed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["cluster"]
    search_fields = ["subject", "message"]


@admin.register(ContainerInstanceState)
class ContainerInstanceStateAdmin(ReadOnlyAdmin):
    list_display = ["cluster", "ec2_instance_id", "status", "agent_connected", "since", "seen_at"]
    list_filter = ["cluster", "agent_connected", "status"]
    list_select_related = ["cluster"]
