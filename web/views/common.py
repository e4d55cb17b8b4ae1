"""What the customer views share: the acting membership, capability checks, and chart building."""

from collections.abc import Sequence
from datetime import date
from typing import cast

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.models import Membership
from accounts.permissions import Capability, membership_can
from billing.usage.selectors import DailyUsage
from core.money import money_display
from web import charts, formatting

CAPABILITY_DENIED = {
    Capability.MANAGE_KEYS: "Only owners and developers can change API keys.",
    Capability.MANAGE_MEMBERS: "Only owners can invite, change or remove members.",
    Capability.MANAGE_BILLING: "Only owners and billing admins can change billing settings.",
    Capability.VIEW: "Your role does not allow this page.",
}


def membership_of(request: HttpRequest) -> Membership:
    """The membership `membership_required` put on the request."""
    return cast(Membership, request.membership)  # type: ignore[attr-defined]


def can(request: HttpRequest, capability: Capability) -> bool:
    return membership_can(membership_of(request), capability)


def require(request: HttpRequest, capability: Capability) -> None:
    if not can(request, capability):
        raise PermissionDenied(CAPABILITY_DENIED[capability])


def capabilities(request: HttpRequest) -> dict[str, bool]:
    """For templates: which controls to show (the views check again on every write)."""
    return {capability.value: can(request, capability) for capability in Capability}


def usage_charts(
    *, daily: Sequence[DailyUsage], days: Sequence[date], currency: str, dimension_label: str
) -> tuple[charts.Chart, charts.Chart]:
    """The spend chart and the tokens chart of the same daily figures."""
    spend = charts.stacked_daily_chart(
        title=f"Spend per day by {dimension_label}",
        days=days,
        points=[charts.Point(row.day, row.group, row.label, row.charge_nano) for row in daily],
        value_text=lambda nano: money_display(nano, currency),
        axis_text=lambda nano: formatting.money_compact(nano, currency),
        # money_compact shows at most four decimals; a 1, 2 or 5 x 10^k step from here reads distinctly.
        min_step=formatting.MONEY_COMPACT_RESOLUTION_NANO,
    )
    tokens = charts.stacked_daily_chart(
        title=f"Tokens per day by {dimension_label}",
        days=days,
        points=[charts.Point(row.day, row.group, row.label, row.tokens) for row in daily],
        value_text=lambda n: f"{n:,} tokens",
        axis_text=formatting.tokens_compact,
    )
    return spend, tokens
