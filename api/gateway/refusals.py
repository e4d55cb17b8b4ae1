"""The 402 of a call refused for money, in OpenAI's error shape with a machine-readable object beside the message.

`error.details` says which limit refused (`reason`: "credit", "key_spend_limit", "budget", "postpaid_suspended"; a
key's spend limit is a hard budget of the key, named as such),
what is available, what the call needed at most, the largest max_tokens that fits for this prompt, the model's
prices, the currency, when a budget resets, and where credit is added, so that a program can act on
it (lower max_tokens, wait for the reset, top up) without reading prose. Amounts come twice: a decimal string in
the currency's main unit and an integer in nano-units (1e-9 of the unit). The official SDK exposes the object as
`APIStatusError.body["details"]`.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings

from api.gateway.http import GatewayError
from billing.invoicing.models import NANO_PER_MINOR, Invoice
from billing.metering import holds
from billing.metering.budgets import BudgetShort
from billing.pricing import rating
from core.money import format_amount

if TYPE_CHECKING:
    from api.gateway.calls import Call

TOP_UP_PATH = "/billing/top-up/"


def _money(amount_nano: int) -> dict[str, Any]:
    return {"amount": format_amount(amount_nano), "amount_nano": amount_nano}


def _affordable(call: "Call", left_nano: int) -> int | None:
    """The largest max_tokens (per choice) whose hold fits in `left_nano`, 0 if none; None for embeddings."""
    if call.endpoint != "chat":
        return None
    ceiling = min(call.model.max_output_tokens, call.model.context_window - call.prompt_tokens)
    # The hold covers max_tokens for each of the n choices: find the largest total, then share it.
    total = holds.affordable_max_tokens(
        prices=call.context.prices,
        prompt_tokens=call.prompt_tokens,
        budget_nano=left_nano,
        service_tier=call.service_tier,
        ceiling=ceiling * call.n,
    )
    return total // call.n


def _prices(call: "Call") -> dict[str, Any]:
    """The model's prices for this call's prompt (long-context prices when it is past the threshold), per million
    tokens, before any service-tier factor, with the factor beside them."""
    prices = call.context.prices
    input_rate, cached_rate, output_rate = rating.kind_rates(prices, call.prompt_tokens)
    return {
        "model": call.model.slug,
        "unit": "per_million_tokens",
        # Prices are micro-units per million tokens; x1000 gives nano-units.
        "input": format_amount(input_rate * 1000),
        "cached_input": format_amount(cached_rate * 1000),
        "output": format_amount(output_rate * 1000),
        "request_fee": format_amount(prices.request_fee_nano),
        "service_tier": call.service_tier,
        "service_tier_factor_bps": rating.service_tier_factor_bps(prices, call.service_tier),
    }


def _message(call: "Call", left_nano: int, affordable: int | None, *, what: str) -> str:
    """What the request can cost, what is left, and the largest max_tokens that fits."""
    currency = call.context.currency
    left = f"{format_amount(left_nano)} {currency} is left"
    if affordable is None:
        return f"{what}: this input costs up to {format_amount(call.hold_nano)} {currency} and {left}."
    message = (
        f"{what}: this request can cost up to {format_amount(call.hold_nano)} {currency} ({call.prompt_tokens} "
        f"prompt tokens and max_tokens={call.max_tokens}"
        + (f" for each of n={call.n} choices" if call.n > 1 else "")
        + f") and {left}."
    )
    if affordable:
        return f"{message} The largest max_tokens it affords is {affordable}."
    return f"{message} It does not cover this prompt even with max_tokens=1; shorten the prompt."


def _details(call: "Call", reason: str, left_nano: int, affordable: int | None) -> dict[str, Any]:
    return {
        "reason": reason,
        "currency": call.context.currency,
        "available": _money(left_nano),
        "required": _money(call.hold_nano),
        "prompt_tokens": call.prompt_tokens,
        "max_tokens": call.max_tokens if call.endpoint == "chat" else None,
        "n": call.n,
        "affordable_max_tokens": affordable,
        "prices": _prices(call),
        "resets_at": None,
        "add_credit_url": f"{settings.SITE_URL.rstrip('/')}{TOP_UP_PATH}",
    }


def _error(call: "Call", message: str, code: str, details: dict[str, Any]) -> GatewayError:
    return GatewayError(
        402,
        message,
        error_type="insufficient_quota",
        code=code,
        param="max_tokens" if call.endpoint == "chat" else None,
        headers={"x-request-id": call.request_id, "x-should-retry": "false"},
        details=details,
    )


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def refusal(call: "Call", short: holds.CreditShort | BudgetShort) -> GatewayError:
    """The 402 of a refused hold: short of the organization's credit or of a hard budget. A hard budget of the API
    key is the key's spend limit, and says so (`key_spend_limit_reached`, `details.key_spend_limit`)."""
    currency = call.context.currency
    if isinstance(short, holds.CreditShort):
        left = max(0, short.spendable_nano)
        affordable = _affordable(call, left)
        message = _message(call, left, affordable, what="Not enough credit") + " Add credit to continue."
        return _error(call, message, "insufficient_credit", _details(call, "credit", left, affordable))
    left = short.left_nano
    affordable = _affordable(call, left)
    amount = f"{format_amount(short.amount_nano)} {currency} per {short.period}"
    if short.scope == "api_key":
        what = f"This API key's spend limit per {short.period} is reached"
        message = f"{_message(call, left, affordable, what=what)} The limit is {amount}; it resets at "
        reason, code = "key_spend_limit", "key_spend_limit_reached"
    else:
        target = {"organization": "The organization's", "workflow": f"The workflow '{short.workflow}'s"}[short.scope]
        what = f"{target} budget per {short.period} is reached"
        message = f"{_message(call, left, affordable, what=what)} The budget is {amount}; it resets at "
        reason, code = "budget", "budget_exceeded"
    message += f"{_iso(short.resets_at)}."
    details = _details(call, reason, left, affordable)
    details["resets_at"] = _iso(short.resets_at)
    if short.scope == "api_key":
        details["key_spend_limit"] = {
            "api_key_id": short.api_key_id,
            "period": short.period,
            "limit": _money(short.amount_nano),
            "used": _money(short.used_nano),
        }
    details["budget"] = {
        "id": short.budget_id,
        "scope": short.scope,
        "workflow": short.workflow or None,
        "api_key_id": short.api_key_id,
        "period": short.period,
        "mode": "hard",
        "amount": _money(short.amount_nano),
        "used": _money(short.used_nano),
        "resets_at": _iso(short.resets_at),
    }
    return _error(call, message, code, details)


def suspended_refusal(refusal: GatewayError, invoice: Invoice | None) -> GatewayError:
    """The 402 of an organization whose postpaid use is suspended: it names the unpaid invoice (also in the
    x-billing-unpaid-invoice header, for machines); a suspension staff made by hand names none."""
    headers = dict(refusal.headers)
    details = {**(refusal.details or {}), "reason": "postpaid_suspended"}
    if invoice is None:
        message = f"{refusal.message} Postpaid use is suspended; prepaid credit still pays for calls. Contact support."
    else:
        total_nano = invoice.total_minor * NANO_PER_MINOR
        amount = f"{format_amount(total_nano)} {invoice.currency}"
        message = (
            f"{refusal.message} Postpaid use is suspended until invoice {invoice.number} ({amount}) is paid; "
            "prepaid credit still pays for calls."
        )
        headers["x-billing-unpaid-invoice"] = invoice.number
        details["unpaid_invoice"] = {"number": invoice.number, **_money(total_nano)}
    return GatewayError(
        402,
        message,
        error_type=refusal.error_type,
        code="postpaid_suspended",
        param=refusal.param,
        headers=headers,
        details=details,
    )
