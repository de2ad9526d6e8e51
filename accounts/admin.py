from django.contrib import admin

from fatcontroller.readonly_admin import ReadOnlyAdmin

from . import tokens
from .models import ApiToken, AuditEntry


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every person's tokens, for staff: listed and revoked, never shown (only a hash is kept)."""

    list_display = ("name", "user", "prefix", "created_at", "expires_at", "last_used_at",
                    "revoked_at")  # fmt: skip
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = ("user", "name", "prefix", "created_at", "expires_at", "last_used_at",
                       "revoked_at", "revoked_by")  # fmt: skip
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # made by their owner (the tokens page, manage.py make_token)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = sum(tokens.revoke(token, by=request.user) for token in queryset)
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Read only: nobody edits or deletes an audit entry, staff included."""

    list_display = ("at", "actor_name", "address", "action", "application", "subject")
    list_filter = ("action", "application")
    search_fields = ("actor_name", "subject")
