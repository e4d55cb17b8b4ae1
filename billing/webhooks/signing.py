"""The signature every delivery carries, made like Stripe's.

    Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's secret>

A receiver recomputes the HMAC over the raw bytes it received and compares in constant time, and refuses a
timestamp far from its clock (a replay). The README's recipe is the receiver's side of exactly this.
"""

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Webhook-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)


def secret_generate() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_header(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"
