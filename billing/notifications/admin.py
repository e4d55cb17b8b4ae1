from django.contrib import admin

from billing.notifications.models import Notice, NotificationSettings


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(admin.ModelAdmin):
    list_display = (
        "organization",
        "low_balance_enabled",
        "low_balance_threshold_nano",
        "credit_expiring_enabled",
        "credit_expiring_days",
        "email_enabled",
        "updated_at",
    )
    raw_id_fields = ("organization", "updated_by")


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    """Sent notices are a record: read them here, never edit them."""

    list_display = ("organization", "kind", "dedupe_key", "created_at", "emailed_at")
    list_filter = ("kind",)
    search_fields = ("organization__name", "dedupe_key")
    readonly_fields = ("organization", "kind", "dedupe_key", "detail", "created_at", "emailed_at", "recipients")

    def has_add_permission(self, request: object) -> bool:
        return False
