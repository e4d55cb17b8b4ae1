"""Routes of the billing pages and the JSON endpoints their scripts call."""

from django.urls import path

from web.billing import api, details, invoices, plans, views

urlpatterns = [
    path("billing/top-up/", views.top_up_page, name="billing_top_up"),
    path("billing/top-up/start/", api.TopUpStartApi.as_view(), name="billing_top_up_start"),
    path("billing/top-up/recent/", views.top_up_recent, name="billing_top_up_recent"),
    path("billing/top-up/<str:top_up_id>/", api.TopUpStatusApi.as_view(), name="billing_top_up_status"),
    path("billing/top-up/<str:top_up_id>/pay/", api.TopUpPayApi.as_view(), name="billing_top_up_pay"),
    path("billing/top-up/<str:top_up_id>/sync/", api.TopUpSyncApi.as_view(), name="billing_top_up_sync"),
    path("billing/auto-top-up/", views.auto_top_up_page, name="billing_auto_top_up"),
    path("billing/auto-top-up/card/", api.AutoTopUpCardApi.as_view(), name="billing_auto_top_up_card"),
    path(
        "billing/auto-top-up/card/confirm/",
        api.AutoTopUpCardConfirmApi.as_view(),
        name="billing_auto_top_up_card_confirm",
    ),
    path("billing/payment-methods/", views.payment_methods_page, name="billing_payment_methods"),
    path("billing/receipts/", views.receipts_page, name="billing_receipts"),
    path("billing/receipts/<str:top_up_id>/", views.receipt_page, name="billing_receipt"),
    path("billing/invoices/", invoices.invoices_page, name="billing_invoices"),
    path("billing/invoices/<int:invoice_id>/", invoices.invoice_page, name="billing_invoice"),
    path("billing/invoices/<int:invoice_id>/pdf/", invoices.invoice_pdf, name="billing_invoice_pdf"),
    path("billing/invoices/<int:invoice_id>/lines.csv", invoices.invoice_lines_csv, name="billing_invoice_lines_csv"),
    path(
        "billing/invoices/<int:invoice_id>/lines/<int:line_id>/",
        invoices.invoice_line_page,
        name="billing_invoice_line",
    ),
    path("billing/requests/<int:usage_id>/", invoices.usage_request_page, name="billing_request"),
    path("billing/plans/", plans.plans_page, name="billing_plans"),
    path("billing/plans/confirm/", plans.plan_confirm, name="billing_plan_confirm"),
    path("billing/plans/<str:plan_slug>/preview/", plans.plan_preview, name="billing_plan_preview"),
    path("billing/commitments/confirm/", plans.commitment_confirm, name="billing_commitment_confirm"),
    path("billing/commitments/<str:offer_id>/preview/", plans.commitment_preview, name="billing_commitment_preview"),
    # Who invoices are addressed to.
    path("billing/details/", details.billing_details_page, name="billing_details"),
]
