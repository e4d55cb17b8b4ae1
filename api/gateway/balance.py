"""GET /v1/balance: the caller's organization's credit, for developers and their scripts."""

from typing import Any

from django.http import HttpRequest, JsonResponse

from api.gateway.http import gateway_view, key_authenticate
from billing.ledger import selectors
from core.money import format_amount
from core.orm import orm_call


@gateway_view("GET")
async def balance(request: HttpRequest) -> JsonResponse:
    key = await key_authenticate(request, endpoint="balance")
    state = await orm_call(selectors.wallet_balance, organization_id=key.organization_id)
    return JsonResponse(balance_body(state))


def balance_body(state: selectors.Balance) -> dict[str, Any]:
    """The balance object (also GET /v1/organization/balance's, for admin keys)."""
    return {
        "object": "balance",
        "currency": state.currency,
        "available": format_amount(state.available_nano),
        "available_nano": state.available_nano,
        "held": format_amount(state.held_nano),
        "held_nano": state.held_nano,
        "overdraft_limit": format_amount(state.overdraft_limit_nano),
        "overdraft_limit_nano": state.overdraft_limit_nano,
        "expiring_soon": {
            "within_days": state.expiring_within_days,
            "amount": format_amount(state.expiring_soon_nano),
            "amount_nano": state.expiring_soon_nano,
            "next_expiry_at": state.next_expiry_at.isoformat() if state.next_expiry_at else None,
        },
    }
