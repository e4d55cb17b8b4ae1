"""Routes of the staff REST API (/api/staff/...). Each area appends its own block."""

from django.urls import path

from api.staff import invoices, ledger, organizations, tokens, usage

# Organizations and their credit.
urlpatterns = [
    path("organizations/", organizations.OrganizationListCreateApi.as_view(), name="staff-organizations"),
    path(
        "organizations/<int:organization_id>/",
        organizations.OrganizationDetailApi.as_view(),
        name="staff-organization",
    ),
    path("organizations/<int:organization_id>/balance/", ledger.BalanceApi.as_view(), name="staff-balance"),
    path(
        "organizations/<int:organization_id>/credit-grants/",
        ledger.CreditGrantCreateApi.as_view(),
        name="staff-credit-grants",
    ),
    path("organizations/<int:organization_id>/grants/", ledger.GrantListApi.as_view(), name="staff-grants"),
    path(
        "organizations/<int:organization_id>/grants/<int:grant_id>/reversals/",
        ledger.GrantReversalApi.as_view(),
        name="staff-grant-reversals",
    ),
    path("organizations/<int:organization_id>/overdraft/", ledger.OverdraftApi.as_view(), name="staff-overdraft"),
    path("organizations/<int:organization_id>/journal/", ledger.JournalListApi.as_view(), name="staff-journal"),
]

# The caller's own staff token: rotate (POST) or revoke (DELETE).
urlpatterns += [path("token/", tokens.StaffTokenApi.as_view(), name="staff-token")]
# Invoices (read-only) and how an organization is invoiced.
urlpatterns += [
    path("invoices/", invoices.InvoiceListApi.as_view(), name="staff-invoices"),
    path("invoices/<int:invoice_id>/", invoices.InvoiceDetailApi.as_view(), name="staff-invoice"),
    path(
        "organizations/<int:organization_id>/billing-profile/",
        invoices.BillingProfileApi.as_view(),
        name="staff-billing-profile",
    ),
]
# Who an organization's invoices are addressed to (set by the customer; read-only here).
urlpatterns += [
    path(
        "organizations/<int:organization_id>/billing-details/",
        invoices.BillingDetailsApi.as_view(),
        name="staff-billing-details",
    ),
]
# Staff actions on an invoice, each with a reason (in the audit log).
urlpatterns += [
    path("invoices/<int:invoice_id>/credit-notes/", invoices.CreditNoteCreateApi.as_view(), name="staff-credit-notes"),
    path("invoices/<int:invoice_id>/void/", invoices.InvoiceVoidApi.as_view(), name="staff-invoice-void"),
    path(
        "invoices/<int:invoice_id>/mark-uncollectible/",
        invoices.InvoiceUncollectibleApi.as_view(),
        name="staff-invoice-uncollectible",
    ),
    path("invoices/<int:invoice_id>/resend/", invoices.InvoiceResendApi.as_view(), name="staff-invoice-resend"),
    path("invoices/<int:invoice_id>/collect/", invoices.InvoiceCollectApi.as_view(), name="staff-invoice-collect"),
]
# Usage reports.
urlpatterns += [path("usage/drift/", usage.DriftReportApi.as_view(), name="staff-usage-drift")]
