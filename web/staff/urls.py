"""Routes of the staff pricing console, under /staff/pricing/."""

from django.urls import path

from web.staff import drift, views

urlpatterns = [
    path("", views.models_list, name="staff-pricing"),
    path("models/<str:slug>/", views.model_detail, name="staff-pricing-model"),
    path("models/<str:slug>/publish/", views.version_publish, name="staff-pricing-publish"),
    path("versions/<int:version_id>/cancel/", views.version_cancel, name="staff-pricing-version-cancel"),
    path("preview/", views.preview, name="staff-pricing-preview"),
    path("plans/", views.plans, name="staff-pricing-plans"),
    path("plans/<slug:slug>/offer/", views.plan_offer, name="staff-pricing-plan-offer"),
    path("offers/", views.offers, name="staff-pricing-offers"),
    path("offers/<int:offer_id>/offer/", views.offer_toggle, name="staff-pricing-offer-toggle"),
    path("overrides/", views.overrides, name="staff-pricing-overrides"),
    path("overrides/<int:override_id>/end/", views.override_end, name="staff-pricing-override-end"),
    path("audit/", views.audit, name="staff-pricing-audit"),
    path("drift/", drift.drift_report, name="staff-pricing-drift"),
]
