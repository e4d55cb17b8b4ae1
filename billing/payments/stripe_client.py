"""The one place that builds a Stripe client.

Every Stripe call goes through `stripe_client()`, so pointing the product at localstripe (development, tests,
the quickstart) is a matter of STRIPE_API_BASE, never a code path of its own.
"""

from functools import cache

import stripe
from django.conf import settings
from stripe._base_address import BaseAddresses
from stripe._request_options import RequestOptions

STRIPE_JS_URL = "https://js.stripe.com/v3/"

# PaymentIntents and SetupIntents name their payment method type (`payment_method_types=["card"]`), so Stripe never
# asks for a redirect `return_url`: a card is confirmed by the server or in the page by Stripe.js
# (stripe.confirmCardPayment / confirmCardSetup), which runs 3-D Secure in a dialog. Stripe removed that parameter
# in API version 2026-09-30 (the library's default), so these calls pin an API version that has it. localstripe
# speaks this request shape as well. Webhook payloads do not depend on it (the fields we read are the same in every
# version).
INTENTS_API_VERSION = "2024-06-20"


@cache
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    base_addresses: BaseAddresses = {"api": api_base} if api_base else {}
    # Retries are safe: every mutating call carries an idempotency key derived from our own ids.
    return stripe.StripeClient(api_key, base_addresses=base_addresses, max_network_retries=2)


def stripe_client() -> stripe.StripeClient:
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE.rstrip("/"))


def intent_options(*, idempotency_key: str) -> RequestOptions:
    """Options of a PaymentIntent or SetupIntent call: our idempotency key and the pinned API version."""
    return {"idempotency_key": idempotency_key, "stripe_version": INTENTS_API_VERSION}


def stripe_js_url() -> str:
    """Stripe.js, or localstripe's stand-in for it when Stripe calls go to localstripe."""
    base = settings.STRIPE_API_BASE.rstrip("/")
    return f"{base}/js.stripe.com/v3/" if base else STRIPE_JS_URL


def stripe_error_message(exc: stripe.StripeError) -> str:
    """A message a customer can act on ("Your card was declined."), never a stack of API details.

    Only card errors carry a message meant for the card holder; other errors speak to developers.
    """
    if isinstance(exc, stripe.CardError) and exc.user_message:
        return str(exc.user_message)
    if stripe_error_is_transient(exc):
        return "The payment service could not be reached. Please try again in a few minutes."
    return "Payments are not available right now. Please try again later or contact support."


def stripe_error_is_transient(exc: stripe.StripeError) -> bool:
    """Whether Stripe may or may not have acted: the request did not get a definite answer.

    Such calls are retried with the same idempotency key, never treated as a refusal.
    """
    return isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError) or (
        isinstance(exc, stripe.APIError) or (exc.http_status or 0) >= 500
    )
