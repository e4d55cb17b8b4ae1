"""Customer web pages. Each area appends its own routes to `urlpatterns`."""

from django.urls import path

from web import context
from web.views import dashboard, invitations, keys, members, notifications, organizations, pricing, usage, webhooks

urlpatterns = [
    path("organization/switch/", context.organization_switch, name="organization_switch"),
    path("", dashboard.dashboard, name="dashboard"),
    path("usage/", usage.usage_page, name="usage"),
    path("usage/export.csv", usage.usage_export, name="usage_export"),
    path("keys/", keys.key_list, name="keys"),
    path("keys/new/", keys.key_create, name="key_create"),
    path("keys/<int:key_id>/", keys.key_detail, name="key_detail"),
    path("keys/<int:key_id>/rotate/", keys.key_rotate, name="key_rotate"),
    path("keys/<int:key_id>/revoke/", keys.key_revoke, name="key_revoke"),
    path("members/", members.member_list, name="members"),
    path("members/invite/", members.member_invite, name="member_invite"),
    path("members/<int:membership_id>/role/", members.member_role, name="member_role"),
    path("members/<int:membership_id>/remove/", members.member_remove, name="member_remove"),
    path(
        "members/invitations/<int:invitation_id>/revoke/",
        members.invitation_revoke_view,
        name="invitation_revoke",
    ),
    path(
        "members/invitations/<int:invitation_id>/resend/",
        members.invitation_resend_view,
        name="invitation_resend",
    ),
    path("invitations/<str:token>/", invitations.invitation_show, name="invitation_show"),
    path("settings/notifications/", notifications.notification_settings, name="notification_settings"),
    path("organizations/new/", organizations.organization_new, name="organization_new"),
    path("pricing/", pricing.pricing, name="pricing"),
]

# Outbound webhooks: the organization's endpoints, their delivery logs, test events and redelivery.
urlpatterns += [
    path("settings/webhooks/", webhooks.webhook_list, name="webhooks"),
    path("settings/webhooks/<int:endpoint_id>/", webhooks.webhook_detail, name="webhook_detail"),
    path("settings/webhooks/<int:endpoint_id>/test/", webhooks.webhook_test, name="webhook_test"),
    path("settings/webhooks/<int:endpoint_id>/rotate/", webhooks.webhook_rotate, name="webhook_rotate"),
    path("settings/webhooks/<int:endpoint_id>/delete/", webhooks.webhook_delete, name="webhook_delete"),
    path(
        "settings/webhooks/<int:endpoint_id>/deliveries/<int:delivery_id>/redeliver/",
        webhooks.webhook_redeliver,
        name="webhook_redeliver",
    ),
]

# Budgets: the page, each budget's page, and the JSON endpoints under /api/budgets/ (session auth).
from web.billing import budgets_api  # noqa: E402
from web.views import budgets  # noqa: E402

urlpatterns += [
    path("budgets/", budgets.budget_list, name="budgets"),
    path("budgets/<int:budget_id>/", budgets.budget_detail, name="budget_detail"),
    path("api/budgets/", budgets_api.BudgetListApi.as_view(), name="api_budgets"),
    path("api/budgets/<str:budget_id>/", budgets_api.BudgetDetailApi.as_view(), name="api_budget"),
]

# A key's own rate limits as JSON (session auth).
from web import keys_api  # noqa: E402

urlpatterns += [
    path("api/keys/<str:api_key_id>/rate-limits/", keys_api.KeyRateLimitsApi.as_view(), name="api_key_rate_limits"),
]
