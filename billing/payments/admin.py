"""Read-mostly admin views: payments are changed through the services (webhooks, refunds), never edited here."""

from django.contrib import admin

from billing.payments.models import AutoTopUp, Dispute, ExternalRefund, Refund, StripeCustomer, StripeEvent, TopUp


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(TopUp)
class TopUpAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "kind", "status", "amount_nano", "refunded_nano", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("stripe_payment_intent_id", "organization__name")


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyAdmin):
    # `waiting`: refunds and disputes of payments whose success has not arrived (or that we never saw).
    list_display = ("event_id", "type", "status", "payment_intent_id", "attempts", "received_at", "processed_at")
    list_filter = ("status", "type")
    search_fields = ("event_id", "payment_intent_id")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ("id", "top_up", "status", "amount_nano", "created_by", "created_at")
    list_filter = ("status",)


@admin.register(Dispute)
class DisputeAdmin(ReadOnlyAdmin):
    list_display = ("stripe_dispute_id", "top_up", "status", "amount_nano", "taken_nano", "unrecovered_nano")
    list_filter = ("status", "funds_withdrawn")
    search_fields = ("stripe_dispute_id",)


@admin.register(ExternalRefund)
class ExternalRefundAdmin(ReadOnlyAdmin):
    list_display = ("stripe_refund_id", "top_up", "status", "amount_nano", "taken_nano", "unrecovered_nano")
    list_filter = ("status",)
    search_fields = ("stripe_refund_id",)


@admin.register(StripeCustomer)
class StripeCustomerAdmin(ReadOnlyAdmin):
    list_display = ("organization", "stripe_customer_id", "created_at")


@admin.register(AutoTopUp)
class AutoTopUpAdmin(ReadOnlyAdmin):
    list_display = ("organization", "enabled", "threshold_nano", "amount_nano", "daily_cap_nano", "card_last4")
