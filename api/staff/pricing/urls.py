"""Routes of the staff pricing API, under /api/staff/."""

from django.urls import path

from api.staff.pricing import catalog, preview, selling

urlpatterns = [
    path("models/", catalog.ModelList.as_view(), name="staff-models"),
    path("models/<str:slug>/", catalog.ModelDetail.as_view(), name="staff-model"),
    path("price-versions/", catalog.PriceVersionList.as_view(), name="staff-price-versions"),
    path("price-versions/<int:version_id>/", catalog.PriceVersionDetail.as_view(), name="staff-price-version"),
    path(
        "price-versions/<int:version_id>/cancel/",
        catalog.PriceVersionCancel.as_view(),
        name="staff-price-version-cancel",
    ),
    path("tier-schedules/", catalog.TierScheduleList.as_view(), name="staff-tier-schedules"),
    path("tier-schedules/<int:schedule_id>/", catalog.TierScheduleDetail.as_view(), name="staff-tier-schedule"),
    path(
        "tier-schedules/<int:schedule_id>/cancel/",
        catalog.TierScheduleCancel.as_view(),
        name="staff-tier-schedule-cancel",
    ),
    path("plans/", selling.PlanList.as_view(), name="staff-plans"),
    path("plans/<slug:slug>/", selling.PlanDetail.as_view(), name="staff-plan"),
    path("subscriptions/", selling.SubscriptionList.as_view(), name="staff-subscriptions"),
    path("subscriptions/<int:subscription_id>/", selling.SubscriptionDetail.as_view(), name="staff-subscription"),
    path(
        "subscriptions/<int:subscription_id>/change/",
        selling.SubscriptionChange.as_view(),
        name="staff-subscription-change",
    ),
    path(
        "subscriptions/<int:subscription_id>/cancel/",
        selling.SubscriptionCancel.as_view(),
        name="staff-subscription-cancel",
    ),
    path("commitment-offers/", selling.OfferList.as_view(), name="staff-commitment-offers"),
    path("commitment-offers/<int:offer_id>/", selling.OfferDetail.as_view(), name="staff-commitment-offer"),
    path("commitments/", selling.CommitmentList.as_view(), name="staff-commitments"),
    path("commitments/<int:commitment_id>/", selling.CommitmentDetail.as_view(), name="staff-commitment"),
    path("overrides/", selling.OverrideList.as_view(), name="staff-overrides"),
    path("overrides/<int:override_id>/", selling.OverrideDetail.as_view(), name="staff-override"),
    path("overrides/<int:override_id>/end/", selling.OverrideEnd.as_view(), name="staff-override-end"),
    path("pricing/preview/", preview.Preview.as_view(), name="staff-pricing-preview"),
    path("pricing/audit/", preview.AuditLog.as_view(), name="staff-pricing-audit"),
]
