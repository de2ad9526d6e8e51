from django.contrib import admin
from django.db.models import Count

from .models import Cluster, Placement, Service

# Applications configured by a file (docs/app-config.md) are best changed there: loading the
# file again puts back what it says.


class PlacementInline(admin.TabularInline):
    model = Placement
    extra = 0
    fields = ["kind", "cluster", "ecs_service_name", "container_name", "legacy_job"]
    autocomplete_fields = ["cluster"]


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["name", "application", "process_type", "phase", "placement_count"]
    list_filter = ["application", "process_type", "phase"]
    list_select_related = ["application"]
    search_fields = ["name", "application__slug"]
    ordering = ["application__slug", "phase", "name"]
    inlines = [PlacementInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(placement_count=Count("placements"))

    @admin.display(description="placements", ordering="placement_count")
    def placement_count(self, service):
        return service.placement_count


@admin.register(Placement)
class PlacementAdmin(admin.ModelAdmin):
    list_display = [
        "service",
        "application",
        "phase",
        "kind",
        "cluster",
        "ecs_service_name",
        "container_name",
        "legacy_job",
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

    @admin.display(description="application", ordering="service__application__slug")
    def application(self, placement):
        return placement.service.application.slug

    @admin.display(description="phase", ordering="service__phase")
    def phase(self, placement):
        return placement.service.phase


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "region", "arn", "placement_count"]
    list_filter = ["region"]
    search_fields = ["name", "arn"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(placement_count=Count("placements"))

    @admin.display(description="placements", ordering="placement_count")
    def placement_count(self, cluster):
        return cluster.placement_count
