"""The dashboard: credit, burn rate and runway, notices, 30 days of charts, and the latest requests."""

from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from billing.ledger import selectors as ledger
from billing.notifications import selectors as notifications
from billing.payments import selectors as payments
from billing.pricing import selectors as pricing
from billing.usage import selectors as usage
from web.context import membership_required
from web.views.common import capabilities, membership_of, usage_charts

CHART_DAYS = 30
RECENT_REQUESTS = 20
# Beyond this the runway reads "More than a year": a cent spent in a week against $500 of credit would project
# thousands of years, a number that means nothing.
RUNWAY_MAX_DAYS = 365


@membership_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    organization_id = membership_of(request).organization_id
    now = timezone.now()
    balance = ledger.wallet_balance(organization_id=organization_id, now=now)
    burn = usage.burn_rate(organization_id=organization_id, available_nano=balance.available_nano, now=now)
    chosen = request.GET.get("by", "model")
    by: usage.Dimension = next((d for d in usage.DIMENSIONS if d == chosen), "model")
    today = now.date()
    first = today - timedelta(days=CHART_DAYS - 1)
    start, end = usage.day_range(first=first, last=today)
    daily = usage.usage_daily(filters=usage.UsageFilter(organization_id=organization_id, start=start, end=end), by=by)
    spend_chart, tokens_chart = usage_charts(
        daily=daily,
        days=[first + timedelta(days=n) for n in range(CHART_DAYS)],
        currency=balance.currency,
        dimension_label=usage.DIMENSION_LABELS[by],
    )
    prefs = notifications.notification_settings_get(organization_id=organization_id)
    notices = notifications.notices_due(organization_id=organization_id, now=now, prefs=prefs)
    # The low-balance notice says whether auto top-up is already on (asked only when that notice shows).
    low_balance = any(notice.kind == "low_balance" for notice in notices)
    context = {
        "balance": balance,
        "burn": burn,
        "runway_over_a_year": burn.runway_days is not None and burn.runway_days > RUNWAY_MAX_DAYS,
        "notices": notices,
        "auto_top_up": payments.auto_topup_enabled(organization_id=organization_id) if low_balance else None,
        "by": by,
        "dimensions": [(d, usage.DIMENSION_LABELS[d]) for d in usage.DIMENSIONS],
        "charts": [spend_chart, tokens_chart],
        "recent": usage.usage_recent(organization_id=organization_id, limit=RECENT_REQUESTS),
        "can": capabilities(request),
        "plan": pricing.plan_state(organization_id=organization_id, now=now),
    }
    return render(request, "web/dashboard.html", context)
