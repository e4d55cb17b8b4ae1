"""Routes of the staff pricing API, under /api/staff/."""

from django.urls import path

from api.staff.pricing import catalog, commitments, overrides, plans, preview

urlpatterns = [
    path("models/", catalog.ModelList.as_view(), name="staff-api-models"),
    path("models/<str:slug>/", catalog.ModelDetail.as_view(), name="staff-api-model"),
    path("price-versions/", catalog.PriceVersionList.as_view(), name="staff-api-price-versions"),
    path("price-versions/<int:version_id>/", catalog.PriceVersionDetail.as_view(), name="staff-api-price-version"),
    path(
        "price-versions/<int:version_id>/cancel/",
        catalog.PriceVersionCancel.as_view(),
        name="staff-api-price-version-cancel",
    ),
    path("tier-schedules/", catalog.TierScheduleList.as_view(), name="staff-api-tier-schedules"),
    path("tier-schedules/<int:schedule_id>/", catalog.TierScheduleDetail.as_view(), name="staff-api-tier-schedule"),
    path(
        "tier-schedules/<int:schedule_id>/cancel/",
        catalog.TierScheduleCancel.as_view(),
        name="staff-api-tier-schedule-cancel",
    ),
    path("plans/", plans.PlanList.as_view(), name="staff-api-plans"),
    path("plans/<slug:slug>/", plans.PlanDetail.as_view(), name="staff-api-plan"),
    path("subscriptions/", plans.SubscriptionList.as_view(), name="staff-api-subscriptions"),
    path("subscriptions/<int:subscription_id>/", plans.SubscriptionDetail.as_view(), name="staff-api-subscription"),
    path(
        "subscriptions/<int:subscription_id>/change/",
        plans.SubscriptionChange.as_view(),
        name="staff-api-subscription-change",
    ),
    path(
        "subscriptions/<int:subscription_id>/cancel/",
        plans.SubscriptionCancel.as_view(),
        name="staff-api-subscription-cancel",
    ),
    path("commitment-offers/", commitments.OfferList.as_view(), name="staff-api-commitment-offers"),
    path("commitment-offers/<int:offer_id>/", commitments.OfferDetail.as_view(), name="staff-api-commitment-offer"),
    path("commitments/", commitments.CommitmentList.as_view(), name="staff-api-commitments"),
    path("commitments/<int:commitment_id>/", commitments.CommitmentDetail.as_view(), name="staff-api-commitment"),
    path("overrides/", overrides.OverrideList.as_view(), name="staff-api-overrides"),
    path("overrides/<int:override_id>/", overrides.OverrideDetail.as_view(), name="staff-api-override"),
    path("overrides/<int:override_id>/end/", overrides.OverrideEnd.as_view(), name="staff-api-override-end"),
    path("pricing/preview/", preview.Preview.as_view(), name="staff-api-pricing-preview"),
    path("pricing/audit/", preview.AuditLog.as_view(), name="staff-api-pricing-audit"),
]
