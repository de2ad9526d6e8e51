from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from accounts import audit

from .models import Application, Deploy, DeployEvent, RoleGrant


@admin.register(Application)
class ApplicationAdmin(SimpleHistoryAdmin):
    # Its History button shows every saved version and who saved it.
    list_display = ["slug", "name", "default_branch", "build_backend", "locked", "lock_reason"]
    search_fields = ["slug", "name"]


class DeployEventInline(admin.TabularInline):
    model = DeployEvent
    extra = 0
    readonly_fields = ["created_at", "actor", "from_state", "to_state", "message"]
    can_delete = False


@admin.register(Deploy)
class DeployAdmin(admin.ModelAdmin):
    # State changes go through the state machine, never through a form.
    list_display = ["id", "application", "branch", "mode", "state", "requester", "created_at"]
    list_filter = ["application", "state", "mode"]
    search_fields = ["branch"]
    readonly_fields = [f.name for f in Deploy._meta.fields]
    inlines = [DeployEventInline]

    def has_add_permission(self, request):
        return False


@admin.register(RoleGrant)
class RoleGrantAdmin(admin.ModelAdmin):
    """Who may do what (deploys/roles.py); `manage.py grant` does the same from a shell."""

    list_display = ("__str__", "role", "user", "group", "application", "granted_at")
    list_filter = ("role", "application")
    search_fields = ("user__username", "group__name", "application__slug")

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit.record(request.user, audit.ROLE_GRANT, application=obj.application,
                     subject=str(obj), change={"role": obj.role})  # fmt: skip

    def delete_model(self, request, obj):
        audit.record(request.user, audit.ROLE_REVOKE, application=obj.application,
                     subject=str(obj), change={"role": obj.role})  # fmt: skip
        super().delete_model(request, obj)
