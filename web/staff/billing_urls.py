"""Routes of the staff console's organization billing pages, under /staff/organizations/."""

from django.urls import path

from web.staff import billing_views as views

urlpatterns = [
    path("", views.organizations, name="staff-billing-organizations"),
    path("<int:organization_id>/billing/", views.organization_billing, name="staff-billing-organization"),
    path("<int:organization_id>/billing/profile/", views.profile_update, name="staff-billing-profile"),
    path("<int:organization_id>/billing/overdraft/", views.overdraft_update, name="staff-billing-overdraft"),
    path("<int:organization_id>/billing/suspend/", views.suspend, name="staff-billing-suspend"),
    path("<int:organization_id>/billing/restore/", views.restore, name="staff-billing-restore"),
]
