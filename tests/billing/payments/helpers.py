"""Test helpers for payments: act as the browser's Stripe.js against localstripe, sign webhooks like Stripe, and
wait for things that happen asynchronously (localstripe delivers events about a second after the fact)."""

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
from django.conf import settings
from django.db import connections

from billing.ledger import selectors as ledger_selectors
from billing.ledger import services as ledger
from billing.payments import services
from billing.payments.errors import PaymentDeclined
from billing.payments.models import TopUp
from billing.payments.stripe_client import stripe_client
from core.money import parse_amount

T = TypeVar("T")

CARD_OK = "4242424242424242"
CARD_DECLINED_AT_CHARGE = "4000000000000341"
CARD_NEEDS_AUTHENTICATION = "4000000000003220"


def usd(amount: str) -> int:
    return parse_amount(amount, allow_zero=True)


def browser_confirm_card_setup(
    localstripe_url: str, client_secret: str, number: str, *, authenticate: bool = True
) -> dict[str, Any]:
    """What stripe.confirmCardSetup does in the page (localstripe's stand-in posts these exact requests)."""
    setup_intent_id = client_secret.split("_secret_")[0]
    url = f"{localstripe_url}/v1/setup_intents/{setup_intent_id}/confirm"
    body = {
        "key": settings.STRIPE_PUBLISHABLE_KEY,
        "use_stripe_sdk": True,
        "client_secret": client_secret,
        "payment_method_data": {
            "type": "card",
            "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
            "billing_details": {"address": {"postal_code": "42424"}},
        },
    }
    result = httpx.post(url, json=body).json()
    if result.get("status") == "requires_action" and authenticate:
        # The 3-D Secure dialog, answered "Complete authentication".
        body = {"key": settings.STRIPE_PUBLISHABLE_KEY, "use_stripe_sdk": True, "client_secret": client_secret}
        result = httpx.post(url, json=body).json()
    return result


def browser_confirm_card_payment(
    localstripe_url: str,
    client_secret: str,
    number: str | None = None,
    *,
    success: bool = True,
    authenticate: bool = True,
) -> dict[str, Any]:
    """What stripe.confirmCardPayment does in the page: with a card `number`, confirm the PaymentIntent with the
    card's details (as Stripe.js posts them); then, if the bank asks (and `authenticate`), the 3-D Secure step,
    answered `success`."""
    payment_intent_id = client_secret.split("_secret_")[0]
    key = settings.STRIPE_PUBLISHABLE_KEY
    if number is not None:
        body = {
            "key": key,
            "client_secret": client_secret,
            "payment_method_data": {
                "type": "card",
                "card": {"number": number, "exp_month": "12", "exp_year": "2034", "cvc": "123"},
                "billing_details": {"address": {"postal_code": "42424"}},
            },
        }
        result = httpx.post(f"{localstripe_url}/v1/payment_intents/{payment_intent_id}/confirm", json=body).json()
        if result.get("status") != "requires_action" or not authenticate:
            return result
    url = f"{localstripe_url}/v1/payment_intents/{payment_intent_id}/_authenticate?success={str(success).lower()}"
    return httpx.post(url, json={"key": key, "client_secret": client_secret}).json()


def stripe_signature(payload: str, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe sends: t=<unix time>,v1=HMAC-SHA256(secret, "<t>.<payload>")."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    key = (secret if secret is not None else settings.STRIPE_WEBHOOK_SECRET).encode()
    digest = hmac.new(key, f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(url: str, payload: str | dict[str, Any], **signature_options: Any) -> httpx.Response:
    """POST an event to the webhook endpoint, signed like Stripe signs it (unless told otherwise)."""
    body = payload if isinstance(payload, str) else json.dumps(payload)
    headers = {"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, **signature_options)}
    return httpx.post(url, content=body.encode(), headers=headers, timeout=30)


def charge(org, user, localstripe, amount: str = "20.00", *, card: str = CARD_OK) -> TopUp:
    """A top-up charged at localstripe, as it stands after the charge: no webhook has been delivered to us
    (localstripe sends events nowhere). A declined card leaves the top-up failed, one that needs 3-D Secure leaves it
    waiting for authentication; the caller checks its status."""
    started = services.topup_start(organization_id=org.pk, amount=amount, actor=user)
    assert started.payment_intent_client_secret is not None
    browser_confirm_card_payment(localstripe.url, started.payment_intent_client_secret, card, authenticate=False)
    with contextlib.suppress(PaymentDeclined):
        services.topup_pay(organization_id=org.pk, top_up_id=started.top_up.pk)
    return TopUp.objects.get(pk=started.top_up.pk)


def succeeded_event_json(top_up: TopUp) -> str:
    """The genuine payment_intent.succeeded event localstripe made for this top-up's payment, as JSON."""
    # Only the events since the top-up began, every page of them: localstripe keeps a whole session's events, oldest
    # first, so the first page of all of them would not hold this one after a hundred payments.
    since = int(top_up.created_at.timestamp()) - 5
    params: Any = {"type": "payment_intent.succeeded", "limit": 100, "created": {"gte": since}}
    events = stripe_client().v1.events.list(params=params).auto_paging_iter()
    event = next(e for e in events if e.data.object.id == top_up.stripe_payment_intent_id)
    return json.dumps(event.to_dict())


def pay(org, user, localstripe, amount: str = "20.00") -> TopUp:
    """A top-up paid at localstripe, its payment_intent.succeeded event processed as the webhook would."""
    top_up = charge(org, user, localstripe, amount)
    payload = succeeded_event_json(top_up)
    stored = services.stripe_event_receive(payload=payload.encode(), signature=stripe_signature(payload))
    services.stripe_event_process(stripe_event_id=stored.pk)
    top_up.refresh_from_db()
    assert top_up.status == "succeeded"
    return top_up


def wait_for(check: Callable[[], T], *, timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy (and return it), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def available(organization_id: int) -> int:
    return ledger_selectors.wallet_balance(organization_id=organization_id).available_nano


def close_db_connections() -> None:
    for connection in connections.all():
        connection.close()


# --- the browser (Playwright) ---

PASSWORD = "correct horse battery staple"


def customer_create(email: str, organization_name: str = "Acme") -> tuple[Any, Any]:
    """A user whose email is verified, owning a new organization: (user, organization)."""
    from allauth.account.models import EmailAddress

    from accounts.services import organization_create
    from tests.accounts.factories import UserFactory

    user = UserFactory(username=email, email=email)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user, organization_create(name=organization_name, owner=user)


def browser_login(page: Any, live_url: str, email: str, *, next_path: str) -> None:
    """Log in through the login page, landing on `next_path`."""
    page.goto(f"{live_url}/accounts/login/?next={next_path}")
    page.locator("input[name=login]").fill(email)
    page.locator("input[name=password]").fill(PASSWORD)
    page.locator("input[name=password]").press("Enter")
    page.wait_for_url(f"{live_url}{next_path}")


def browser_fill_card(page: Any, number: str, *, within: str = "#card-element") -> None:
    """Type a card into the card Element (localstripe's stand-in renders plain inputs with these placeholders)."""
    for placeholder, value in (
        ("number", number),
        ("exp_month", "12"),
        ("exp_year", "34"),
        ("cvc", "123"),
        ("postal_code", "42424"),
    ):
        page.locator(f"{within} input[placeholder={placeholder}]").fill(value)


def spend(org, amount: str) -> None:
    """Spend `amount` of the organization's credit (as calls would)."""
    ledger.wallet_debit(organization_id=org.pk, amount_nano=usd(amount), idempotency_key=f"spend-{amount}", actor="t")


def reconciled(org) -> list[str]:
    """What does not reconcile in the organization's wallet (nothing, when all is well)."""
    wallet_id = ledger_selectors.wallet_balance(organization_id=org.pk).wallet_id
    return ledger_selectors.wallet_reconcile(wallet_id=wallet_id)
