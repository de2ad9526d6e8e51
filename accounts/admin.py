from django.contrib import admin
from django.utils import timezone

from .models import ApiToken


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
        count = queryset.filter(revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=request.user
        )
        self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}.")
