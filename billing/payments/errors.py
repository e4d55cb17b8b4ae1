"""Payment errors. They are ApplicationErrors, so every API renders them in the one error shape."""

from billing.ledger.errors import NotFound
from core.errors import ApplicationError, ErrorKind

__all__ = ["EventWaits", "NotFound", "PaymentDeclined", "PaymentsUnavailable", "WebhookRejected"]


class PaymentDeclined(ApplicationError):
    """The card was declined (or failed authentication); the message is Stripe's, meant for the card holder."""

    kind = ErrorKind.PAYMENT_DECLINED
    code = "card_declined"


class PaymentsUnavailable(ApplicationError):
    """Stripe could not be reached or gave no definite answer; nothing was charged twice, try again later."""

    kind = ErrorKind.UNAVAILABLE
    code = "payments_unavailable"


class WebhookRejected(ApplicationError):
    """A webhook request that is not a genuine, fresh Stripe event (bad signature, stale timestamp, not JSON)."""

    code = "invalid_webhook"


class EventWaits(Exception):
    """A Stripe event that cannot be applied yet: it is about a payment whose success has not arrived, or it
    undoes something that has not happened yet (funds reinstated before they were withdrawn). Stripe does not
    promise the order of events, so the event is kept `waiting` and applied when that earlier event arrives.
    Nothing the handler did before raising is kept (it runs in a savepoint)."""
