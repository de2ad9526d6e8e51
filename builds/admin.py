from django.contrib import admin

from .models import Build


@admin.register(Build)
class BuildAdmin(admin.ModelAdmin):
    list_display = ["deploy", "attempt", "status", "backend", "started_at", "finished_at"]
    list_filter = ["status", "backend"]
    readonly_fields = [f.name for f in Build._meta.fields]
