"""Routes of the staff invoices console, under /staff/invoices/."""

from django.urls import path

from web.staff import invoices

urlpatterns = [
    path("", invoices.invoices_list, name="staff-invoices-list"),
    path("<int:invoice_id>/", invoices.invoice_detail, name="staff-invoices-detail"),
    path("<int:invoice_id>/<slug:action>/", invoices.invoice_action, name="staff-invoices-action"),
]
