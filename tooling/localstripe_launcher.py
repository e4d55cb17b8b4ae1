"""python -m tooling.localstripe_launcher --port 8420 --from-scratch: localstripe, with what it lacks for invoicing.

localstripe (the fake Stripe that the tests and the quickstart run) speaks enough of Stripe's API for top-ups,
but not for one-off invoices. This launcher adds, inside the localstripe process, the behaviour real Stripe has
and the product's invoicing relies on, so the product's code stays exactly what runs against real Stripe:

- `POST /v1/invoices` without a subscription creates a draft invoice of the customer's pending invoice items
  (localstripe answers 404 "No upcoming invoices"), and accepts `collection_method`, `days_until_due`,
  `auto_advance` and `pending_invoice_items_behavior` (it answered 500 to the first);
- `POST /v1/invoices/{id}/finalize`, `/send` and `/mark_uncollectible`, which it lacks; `/pay` of an
  uncollectible invoice; `/void` of an invoice that never had a payment;
- the events Stripe sends and localstripe does not: `invoice.finalized`, `invoice.paid`, `invoice.voided`,
  `invoice.marked_uncollectible`, `invoice.sent`, signed like the others;
- credit notes before payment (`POST /v1/credit_notes` on an open or uncollectible invoice, `GET
  /v1/credit_notes/{id}`), which it lacks: they lower the invoice's `amount_due` and `amount_remaining` (its
  `total` stays), and one that leaves nothing due marks the invoice paid (`invoice.paid`, with `amount_paid` 0), as
  Stripe does; `credit_note.created` is sent;
- the `Idempotency-Key` header (localstripe ignores it): a POST repeated with the same key gets the first answer
  and does nothing again, as Stripe does.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from localstripe import resources
from localstripe.resources import Event, Invoice, UserError, extra_apis
from localstripe.webhooks import schedule_webhook

_create_with_subscription = Invoice._api_create.__func__  # type: ignore[attr-defined]
_status = Invoice.status
_on_payment_success = Invoice._on_payment_success
_pay = Invoice._api_pay_invoice.__func__  # type: ignore[attr-defined]


def _api_create(
    cls: type[Invoice],
    customer: str | None = None,
    subscription: str | None = None,
    collection_method: str | None = None,
    days_until_due: str | None = None,
    auto_advance: str | None = None,
    pending_invoice_items_behavior: str | None = None,
    default_payment_method: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    **data: Any,
) -> Invoice:
    if subscription is not None:
        return _create_with_subscription(
            cls, customer=customer, subscription=subscription, description=description, metadata=metadata, **data
        )
    if collection_method not in (None, "charge_automatically", "send_invoice"):
        raise UserError(400, "Invalid collection_method")
    if data:
        raise UserError(400, "Unexpected " + ", ".join(data))
    # The constructor sweeps the customer's pending invoice items onto the invoice.
    invoice = cls(customer=customer, description=description, metadata=metadata)
    invoice.collection_method = collection_method or "charge_automatically"
    invoice.days_until_due = int(days_until_due) if days_until_due else None  # type: ignore[attr-defined]
    invoice._uncollectible = False  # type: ignore[attr-defined]
    invoice.default_payment_method = default_payment_method  # type: ignore[attr-defined]
    return invoice


def _credited(invoice: Invoice) -> int:
    return int(getattr(invoice, "_pre_credited", 0))


def _status_with_uncollectible(self: Invoice) -> str:
    status = _status.fget(self)  # type: ignore[attr-defined]
    if status == "open" and _credited(self) and self.total - _credited(self) <= 0:
        return "paid"  # credit notes left nothing due
    return "uncollectible" if status == "open" and getattr(self, "_uncollectible", False) else status


def _amount_due(self: Invoice) -> int:
    return max(0, self.total - _credited(self))


def _amount_remaining(self: Invoice) -> int:
    return 0 if self.status in ("paid", "void") else self.amount_due


class CreditNote(resources.StripeObject):
    """A credit note before payment: it lowers what an open (or uncollectible) invoice asks for."""

    object = "credit_note"
    _id_prefix = "cn_"

    def __init__(
        self,
        invoice: str | None = None,
        lines: list[dict[str, Any]] | None = None,
        memo: str | None = None,
        metadata: dict[str, str] | None = None,
        reason: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise UserError(400, "Unexpected " + ", ".join(kwargs))
        if not isinstance(invoice, str) or not isinstance(lines, list) or not lines:
            raise UserError(400, "invoice and lines are required")
        target = Invoice._api_retrieve(invoice)
        try:
            items: list[dict[str, Any]] = [
                {
                    "type": "custom_line_item",
                    "description": str(line.get("description") or ""),
                    "quantity": int(line.get("quantity") or 1),
                    "unit_amount": int(line["unit_amount"]),
                }
                for line in lines
                if line.get("type") == "custom_line_item"
            ]
        except (KeyError, TypeError, ValueError):
            raise UserError(400, "Invalid lines") from None
        amount = sum(int(item["quantity"]) * int(item["unit_amount"]) for item in items)
        if len(items) != len(lines) or amount <= 0:
            raise UserError(400, "Invalid lines")
        if target.status not in ("open", "uncollectible"):
            raise UserError(400, "Only an open or uncollectible invoice can be credited before payment")
        if amount > _amount_remaining(target):
            raise UserError(400, "The credit note's amount is more than the invoice's amount_remaining")
        super().__init__()
        self.invoice = invoice
        self.customer = target.customer
        self.currency = target.currency
        self.amount = amount
        self.subtotal = self.total = amount
        self.lines = items
        self.memo = memo
        self.metadata = metadata or {}
        self.reason = reason
        self.status = "issued"
        self.type = "pre_payment"
        target._pre_credited = _credited(target) + amount  # type: ignore[attr-defined]
        schedule_webhook(Event("credit_note.created", self))
        if target.status == "paid":
            target._uncollectible = False  # type: ignore[attr-defined]
            target.status_transitions["paid_at"] = int(resources.time.time())
            schedule_webhook(Event("invoice.paid", target))


def _on_payment_success_and_paid(self: Invoice) -> None:
    _on_payment_success(self)
    schedule_webhook(Event("invoice.paid", self))


def _api_finalize(id: str, **data: Any) -> Invoice:
    invoice = Invoice._api_retrieve(id)
    if invoice.status != "draft":
        raise UserError(400, "This invoice is already finalized")
    invoice._finalize()
    schedule_webhook(Event("invoice.finalized", invoice))
    if invoice.status == "paid":  # nothing to collect: Stripe marks it paid at once
        invoice._on_payment_success()
    return invoice


def _api_pay(cls: type[Invoice], id: str, **data: Any) -> Invoice:
    """Pay with the `payment_method` given, else the invoice's default_payment_method (localstripe knows only the
    customer's default)."""
    invoice = Invoice._api_retrieve(id)
    invoice._uncollectible = False  # type: ignore[attr-defined]
    card = data.get("payment_method") or getattr(invoice, "default_payment_method", None)
    if not card or invoice.status not in ("draft", "open") or invoice.amount_due <= 0:
        return _pay(cls, id)
    invoice._draft = False
    payment = resources.PaymentIntent(
        amount=invoice.amount_due, currency=invoice.currency, customer=invoice.customer, payment_method=card
    )
    invoice.payment_intent = payment.id
    payment.invoice = invoice.id
    payment._confirm(on_failure_now=lambda: None)
    return invoice


def _api_send(id: str, **data: Any) -> Invoice:
    invoice = Invoice._api_retrieve(id)
    if invoice.status != "open":
        raise UserError(400, "Only an open invoice can be sent")
    schedule_webhook(Event("invoice.sent", invoice))
    return invoice


def _api_mark_uncollectible(id: str, **data: Any) -> Invoice:
    invoice = Invoice._api_retrieve(id)
    if invoice.status != "open":
        raise UserError(400, "Only an open invoice can be marked uncollectible")
    invoice._uncollectible = True  # type: ignore[attr-defined]
    schedule_webhook(Event("invoice.marked_uncollectible", invoice))
    return invoice


def _api_void(id: str, **data: Any) -> Invoice:
    invoice = Invoice._api_retrieve(id)
    if invoice.status not in ("draft", "open", "uncollectible"):
        raise UserError(400, "Only a draft, open or uncollectible invoice can be voided")
    if invoice.payment_intent:
        resources.PaymentIntent._api_cancel(invoice.payment_intent)
    invoice._draft = False
    invoice._voided = True
    invoice.status_transitions["voided_at"] = int(resources.time.time())
    schedule_webhook(Event("invoice.voided", invoice))
    return invoice


Invoice._api_create = classmethod(_api_create)  # type: ignore[assignment]
Invoice._api_pay_invoice = classmethod(_api_pay)  # type: ignore[assignment]
Invoice.status = property(_status_with_uncollectible)  # type: ignore[assignment,method-assign]
Invoice.amount_due = property(_amount_due)  # type: ignore[assignment,method-assign]
Invoice.amount_remaining = property(_amount_remaining)  # type: ignore[attr-defined]
Invoice._on_payment_success = _on_payment_success_and_paid  # type: ignore[method-assign]
# Replace localstripe's own /pay and /void routes (extra routes are added in order; the first match wins).
extra_apis[:] = [(method, url, func) for method, url, func in extra_apis if url not in ("/v1/invoices/{id}/void",)]
extra_apis.extend(
    [
        ("POST", "/v1/invoices/{id}/finalize", _api_finalize),
        ("POST", "/v1/invoices/{id}/send", _api_send),
        ("POST", "/v1/invoices/{id}/mark_uncollectible", _api_mark_uncollectible),
        ("POST", "/v1/invoices/{id}/void", _api_void),
        ("POST", "/v1/credit_notes", CreditNote._api_create),
        ("GET", "/v1/credit_notes/{id}", CreditNote._api_retrieve),
    ]
)
for index, (method, url, _func) in enumerate(extra_apis):
    if url == "/v1/invoices/{id}/pay":
        extra_apis[index] = (method, url, Invoice._api_pay_invoice)

# Imported only now: the server registers extra_apis' routes when it is imported.
from aiohttp import web  # noqa: E402
from localstripe import server  # noqa: E402

_answers: dict[str, tuple[int, bytes, str]] = {}


@web.middleware
async def idempotency(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Stripe's idempotency: a POST with a key already seen gets the first answer back, and nothing is done."""
    key = request.headers.get("Idempotency-Key")
    if request.method != "POST" or not key:
        return await handler(request)
    scoped = f"{request.path} {key}"
    if scoped in _answers:
        status, body, content_type = _answers[scoped]
        return web.Response(
            status=status, body=body, content_type=content_type, headers={"Idempotent-Replayed": "true"}
        )
    response = await handler(request)
    if isinstance(response, web.Response) and response.status < 500 and response.body is not None:
        body = response.body if isinstance(response.body, bytes) else json.dumps(response.body).encode()
        _answers[scoped] = (response.status, body, response.content_type)
    return response


server.app.middlewares.append(idempotency)

if __name__ == "__main__":
    server.start()
