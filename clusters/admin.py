from django.contrib import admin

from .models import Cluster, Placement, Service


class PlacementInline(admin.TabularInline):
    model = Placement
    extra = 0


@admin.register(Service)
class ServiceAdmin(admin.ModelAdmin):
    list_display = ["application", "name", "process_type", "phase"]
    list_filter = ["application", "process_type"]
    inlines = [PlacementInline]


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["name", "region", "arn"]
