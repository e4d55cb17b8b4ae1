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
  and does nothing again, as Stripe does;
- customer tax IDs of every type the product offers (localstripe knows only eu_vat, nz_gst, au_abn and es_cif, and
  wants more than 10 characters): any of Stripe's type names with a non-empty value;
- a PaymentIntent created with `setup_future_usage` (localstripe answers 400 "Unexpected"), confirmed with a
  `payment_method` (it answered 500) or with the card's details from the browser (`payment_method_data`, with the
  publishable key and the client secret, as Stripe.js sends them), which saves the card on the customer once paid;
- its Stripe.js stand-in made to behave as Stripe.js does where the product relies on it (`localstripe_js.py`).
"""

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from localstripe import resources
from localstripe.resources import (
    Customer,
    Event,
    Invoice,
    PaymentIntent,
    PaymentMethod,
    StripeObject,
    TaxId,
    UserError,
    extra_apis,
)
from localstripe.webhooks import schedule_webhook

from tooling.localstripe_js import patched_stripe_js

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


_payment_intent_init = PaymentIntent.__init__
_payment_intent_on_success = PaymentIntent._on_success


def _payment_intent_with_future_usage(self: PaymentIntent, setup_future_usage: str | None = None, **data: Any) -> None:
    if setup_future_usage not in (None, "", "on_session", "off_session"):
        raise UserError(400, "Invalid setup_future_usage")
    _payment_intent_init(self, **data)
    self.setup_future_usage = setup_future_usage or None  # type: ignore[attr-defined]


def _payment_intent_confirm(
    cls: type[PaymentIntent],
    id: str,
    payment_method: str | None = None,
    payment_method_data: dict[str, Any] | None = None,
    client_secret: str | None = None,
    key: str | None = None,
    use_stripe_sdk: object = None,
    return_url: str | None = None,
    **data: Any,
) -> PaymentIntent:
    """Stripe's confirm: with the PaymentMethod given (an id, or the card's details from Stripe.js), else the one
    the PaymentIntent already has. A declined card answers 402 and leaves it waiting for another payment method."""
    if data:
        raise UserError(400, "Unexpected " + ", ".join(data))
    if not isinstance(id, str) or not id.startswith("pi_"):
        raise UserError(400, "Bad request")
    intent = cls._api_retrieve(id)
    if client_secret is not None and client_secret != intent.client_secret:
        raise UserError(401, "Unauthorized")
    if intent.status not in ("requires_payment_method", "requires_confirmation"):
        raise UserError(
            400,
            f"This PaymentIntent's status is {intent.status}; it cannot be confirmed.",
            {"code": "payment_intent_unexpected_state"},
        )
    if payment_method_data is not None:
        if not isinstance(payment_method_data, dict):
            raise UserError(400, "Bad request")
        payment_method = PaymentMethod(**payment_method_data).id
    if payment_method is not None:
        PaymentMethod._api_retrieve(payment_method)  # 404 if unknown
        intent.payment_method = payment_method
        intent.latest_charge = None
    if intent.payment_method is None:
        raise UserError(400, "You must provide a payment method to confirm this PaymentIntent.")
    intent._confirm(on_failure_now=intent._report_failure)
    return intent


def _payment_intent_succeeded(self: PaymentIntent) -> None:
    """As Stripe does: a PaymentIntent with setup_future_usage saves its card on the customer once it succeeded."""
    if getattr(self, "setup_future_usage", None) and self.customer and self.payment_method:
        PaymentMethod._api_retrieve(self.payment_method).customer = self.customer
    _payment_intent_on_success(self)


PaymentIntent.__init__ = _payment_intent_with_future_usage  # type: ignore[method-assign]
PaymentIntent._on_success = _payment_intent_succeeded  # type: ignore[method-assign]
PaymentIntent._api_confirm = classmethod(_payment_intent_confirm)  # type: ignore[assignment]
for index, (method, url, _func) in enumerate(extra_apis):
    if url == "/v1/payment_intents/{id}/confirm":
        extra_apis[index] = (method, url, PaymentIntent._api_confirm)

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

# Stripe's customer tax ID types that the product offers (billing.invoicing.taxids), and a few more.
TAX_ID_TYPES = {"eu_vat", "gb_vat", "ch_vat", "no_vat", "us_ein", "ca_bn", "au_abn", "nz_gst", "in_gst", "es_cif"}


def _tax_id_init(
    self: TaxId,
    country: str | None = None,
    customer: str | None = None,
    type: str | None = None,
    value: str | None = None,
    **kwargs: Any,
) -> None:
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    if not isinstance(customer, str) or not customer.startswith("cus_"):
        raise UserError(400, "Bad request")
    if type not in TAX_ID_TYPES or not isinstance(value, str) or not value:
        raise UserError(400, "Invalid tax ID type or value")
    Customer._api_retrieve(customer)  # 404 for an unknown customer
    StripeObject.__init__(self)
    self.country = country or (value[:2] if type == "eu_vat" else type[:2].upper())
    self.customer = customer
    self.type = type
    self.value = value
    self.verification = {"status": "verified", "verified_name": "", "verified_address": ""}


def _api_add_tax_id(
    cls: type[Customer],
    id: str,
    type: str | None = None,
    value: str | None = None,
    **kwargs: Any,
) -> TaxId:
    if kwargs:
        raise UserError(400, "Unexpected " + ", ".join(kwargs.keys()))
    customer = cls._api_retrieve(id)
    tax_id = TaxId(customer=id, type=type, value=value)
    customer.tax_ids._list.append(tax_id)
    return tax_id


TaxId.__init__ = _tax_id_init  # type: ignore[method-assign]
Customer._api_add_tax_id = classmethod(_api_add_tax_id)  # type: ignore[assignment]
for index, (method, url, _func) in enumerate(extra_apis):
    if (method, url) == ("POST", "/v1/customers/{id}/tax_ids"):
        extra_apis[index] = (method, url, Customer._api_add_tax_id)

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

_BROWSER_CONFIRM = re.compile(r"^/v1/payment_intents/(pi_\w+)/confirm$")


@web.middleware
async def stripe_js_stand_in(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """What Stripe.js needs of the server and localstripe lacks: its stand-in script, patched; and confirming a
    PaymentIntent with the publishable key and the client secret (no secret key), which localstripe's key check
    accepts only for its own routes, so it is answered here, before that check."""
    if request.method == "GET" and request.path == "/js.stripe.com/v3/":
        return web.Response(text=patched_stripe_js(), content_type="application/javascript")
    match = _BROWSER_CONFIRM.match(request.path)
    if request.method != "POST" or match is None or server.get_api_key(request) is not None:
        return await handler(request)
    data = await server.get_post_data(request, remove_auth=False) or {}
    key = data.pop("key", None)
    if not isinstance(key, str) or not key.startswith("pk_") or not isinstance(data.get("client_secret"), str):
        raise UserError(401, "Unauthorized")
    data.pop("expand", None)
    return server.json_response(PaymentIntent._api_confirm(match.group(1), **data)._export())


# After the error middleware (so a UserError becomes Stripe's error answer), before the key check.
server.app.middlewares.insert(1, stripe_js_stand_in)

if __name__ == "__main__":
    server.start()
