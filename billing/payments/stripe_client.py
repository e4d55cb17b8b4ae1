"""The one place that builds a Stripe client.

Every Stripe call goes through `stripe_client()`, so pointing the product at localstripe (development, tests,
the quickstart) is a matter of STRIPE_API_BASE, never a code path of its own.
"""

from functools import cache

import stripe
from django.conf import settings
from stripe._base_address import BaseAddresses

STRIPE_JS_URL = "https://js.stripe.com/v3/"


@cache
def _client(api_key: str, api_base: str) -> stripe.StripeClient:
    base_addresses: BaseAddresses = {"api": api_base} if api_base else {}
    # Retries are safe: every mutating call carries an idempotency key derived from our own ids.
    return stripe.StripeClient(api_key, base_addresses=base_addresses, max_network_retries=2)


def stripe_client() -> stripe.StripeClient:
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE.rstrip("/"))


def stripe_js_url() -> str:
    """Stripe.js, or localstripe's stand-in for it when Stripe calls go to localstripe."""
    base = settings.STRIPE_API_BASE.rstrip("/")
    return f"{base}/js.stripe.com/v3/" if base else STRIPE_JS_URL


def stripe_error_message(exc: stripe.StripeError) -> str:
    """A message a customer can act on ("Your card was declined."), never a stack of API details."""
    return exc.user_message or "The payment could not be completed."
