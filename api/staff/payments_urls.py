"""Staff REST routes of the payments area, mounted under /api/staff/."""

from django.urls import path

from api.staff import payments as apis

urlpatterns = [
    path("refunds/", apis.RefundListCreateApi.as_view(), name="staff_refunds"),
    path("refunds/<str:refund_id>/", apis.RefundDetailApi.as_view(), name="staff_refund"),
    path("top-ups/", apis.TopUpListApi.as_view(), name="staff_top_ups"),
    path("stripe-events/", apis.StripeEventListApi.as_view(), name="staff_stripe_events"),
]
