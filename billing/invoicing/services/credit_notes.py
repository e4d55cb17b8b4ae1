"""Credit notes: the only correction of a finalized invoice (which never changes).

A credit note is a document of its own (an `Invoice` row of kind `credit_note`, numbered in its own gapless series,
`issued` once written and frozen by the invoice guard) whose lines each reverse all or part of a named line of the
invoice it corrects. Its money effect is one ledger grant (kind `refund`, keyed by the credit note), of what it
gives back net of credit applied: on an unpaid invoice the grant repays the overdraft that invoice billed (so the
debt is gone) and Stripe's invoice is lowered by a Stripe credit note (what is left due is then collected; if Stripe
was paid meanwhile, the payment becomes credit as usual); on a paid invoice the grant is customer credit. So the
ledger is right whichever way Stripe's side goes, and reconcile checks each credit note against what it reverses.

Voiding a finalized (or uncollectible) invoice is a credit note of everything left on it, then `void`, with Stripe's
invoice voided first (under the invoice's lock: a void Stripe refuses, because the customer just paid, writes
nothing here). Every write locks the invoice row first (then the wallet, in the ledger): two staff members voiding
at once, or a void racing Stripe's invoice.voided event, make one credit note.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.services.audit import audit_record
from billing.invoicing.errors import InvoiceConflict, InvoiceNotFound
from billing.invoicing.models import (
    CHARGE_KINDS,
    CREDIT_KINDS,
    RECORD_KINDS,
    DocumentKind,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LineKind,
)
from billing.invoicing.selectors import amount_due_minor, credited_by_line
from billing.invoicing.services.close import minor_round, sequence_locked
from billing.invoicing.services.dunning import postpaid_restore
from billing.ledger import services as ledger
from billing.payments.stripe_client import stripe_client
from core.errors import ApplicationError, ErrorKind
from core.money import format_amount

logger = logging.getLogger(__name__)

Actor = AbstractBaseUser | str
# The idempotency key of the one credit note a void writes.
VOID_KEY = "void"
REASON_MAX_LENGTH = 1000
KEY_MAX_LENGTH = 200
# Statuses of an invoice that a credit note may correct (finalized and numbered, not void).
CREDITABLE = (InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.UNCOLLECTIBLE)
VOIDABLE = (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE)


class StripeUnavailable(ApplicationError):
    kind = ErrorKind.UNAVAILABLE
    code = "stripe_unavailable"


@dataclass(frozen=True)
class LineCredit:
    """Credit `amount_nano` (> 0) of the invoice's line at `position`; None: all that is left of it."""

    position: int
    amount_nano: int | None = None


@dataclass(frozen=True)
class CreditNoteResult:
    credit_note: Invoice
    created: bool


def reason_clean(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("a reason is required", param="reason")
    if len(reason) > REASON_MAX_LENGTH:
        raise ApplicationError(f"the reason is longer than {REASON_MAX_LENGTH} characters", param="reason")
    return reason


def _key_clean(key: str) -> str:
    key = (key or "").strip()
    if not key or len(key) > KEY_MAX_LENGTH or not key.isprintable():
        raise ApplicationError(
            f"idempotency_key must be 1 to {KEY_MAX_LENGTH} printable characters", param="idempotency_key"
        )
    return key


def invoice_locked(invoice_id: int) -> Invoice:
    """The invoice (not a credit note), locked until commit: the one lock path of every correction."""
    invoice = Invoice.objects.select_for_update().filter(pk=invoice_id, kind=DocumentKind.INVOICE).first()
    if invoice is None:
        raise InvoiceNotFound(f"No invoice {invoice_id}.", param="invoice")
    return invoice


def invoice_action_record(
    invoice: Invoice, action: str, *, reason: str, actor: Actor, detail: dict[str, Any] | None = None
) -> None:
    """The audit entry of a staff action on the invoice: its reason, and the invoice's number with `detail`."""
    audit_record(
        actor=actor,
        action=action,
        organization_id=invoice.organization_id,
        target=f"Invoice:{invoice.pk}",
        target_label=f"invoice {invoice.number}",
        reason=reason,
        detail={"invoice": invoice.number, **(detail or {})},
    )


def _reversal(line: InvoiceLine, amount_nano: int, position: int) -> InvoiceLine:
    """The credit note's line reversing `amount_nano` (the line's sign) of `line`: a copy with the sign turned when
    it is the whole line, one item of that amount when it is a part."""
    whole = amount_nano == line.amount_nano
    return InvoiceLine(
        position=position,
        kind=LineKind.REVERSAL,
        reverses=line,
        description=f"Reverses line {line.position}: {line.description}"[:500],
        model_id=line.model_id,
        price_version_id=line.price_version_id,
        token_kind=line.token_kind,
        service_tier=line.service_tier,
        source=line.source,
        quantity=line.quantity if whole else 1,
        unit=line.unit if whole else "item",
        rate_micro_per_mtok=line.rate_micro_per_mtok if whole else None,
        factor_bps=line.factor_bps if whole else None,
        discount_bps=line.discount_bps if whole else None,
        unit_price_nano=(None if line.unit_price_nano is None else -line.unit_price_nano) if whole else -amount_nano,
        amount_nano=-amount_nano,
        period_start=line.period_start,
        period_end=line.period_end,
    )


def _write(
    invoice: Invoice, reversals: list[tuple[InvoiceLine, int]], *, reason: str, key: str, actor: Actor
) -> Invoice:
    """Write and issue the credit note of `reversals` ((line, amount in the line's sign)) for the locked invoice, in
    the caller's transaction: the document in `closing`, its lines, the ledger grant, then its number and `issued`."""
    charges = sum(-amount for line, amount in reversals if line.kind not in (*CREDIT_KINDS, LineKind.CARRY))
    credit = sum(-amount for line, amount in reversals if line.kind in CREDIT_KINDS)
    carry = sum(-amount for line, amount in reversals if line.kind == LineKind.CARRY)
    # What goes back to the customer: the charges reversed net of the credit applied to them (carry is rounding, not
    # ledger money). Never negative: a credit note gives back, it never bills.
    given_back = -(charges + credit)
    if given_back < 0:
        raise InvoiceConflict(
            f"Earlier credit notes already gave back more than what is left on invoice {invoice.number}; nothing "
            "more can be credited this way.",
            param="lines",
        )
    now = timezone.now()
    note = Invoice.objects.create(
        kind=DocumentKind.CREDIT_NOTE,
        corrects=invoice,
        organization_id=invoice.organization_id,
        wallet_id=invoice.wallet_id,
        currency=invoice.currency,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        collection_method=invoice.collection_method,
        reason=reason,
        idempotency_key=key,
    )
    lines = [_reversal(line, amount, position) for position, (line, amount) in enumerate(reversals, start=1)]
    for line in lines:
        line.invoice = note
    InvoiceLine.objects.bulk_create(lines)
    sequence = sequence_locked(issuer=settings.INVOICE_ISSUER, year=now.year, kind=DocumentKind.CREDIT_NOTE)
    sequence.last_value += 1
    sequence.save(update_fields=["last_value"])
    note.issuer = settings.INVOICE_ISSUER
    note.sequence = sequence.last_value
    note.number = settings.CREDIT_NOTE_NUMBER_FORMAT.format(year=now.year, number=sequence.last_value)
    if given_back > 0:
        note.credit_grant_id = ledger.grant_create(
            organization_id=invoice.organization_id,
            kind="refund",
            amount_nano=given_back,
            idempotency_key=f"credit-note:{note.pk}",
            actor=actor,
            reason=f"credit note {note.number} for invoice {invoice.number}: {reason}"[:500],
            source_ref=f"credit_note:{note.number}",
        ).grant.pk
    note.charges_nano, note.credit_applied_nano, note.carry_in_nano = charges, credit, carry
    note.total_exact_nano = charges + credit + carry
    note.total_minor, note.carry_out_nano = minor_round(note.total_exact_nano)
    note.status = InvoiceStatus.ISSUED
    note.drafted_at = note.finalized_at = now
    note.save()
    audit_record(
        actor=actor,
        action="invoicing.credit_note_issue",
        organization_id=invoice.organization_id,
        target=f"Invoice:{invoice.pk}",
        target_label=f"credit note {note.number} for invoice {invoice.number}",
        reason=reason,
        detail={
            "credit_note": note.number,
            "credit_note_id": note.pk,
            "invoice": invoice.number,
            "lines": {str(line.position): format_amount(amount) for line, amount in reversals},
            "given_back": format_amount(given_back),
        },
    )
    return note


def _replay(invoice: Invoice, key: str, wanted: Sequence[LineCredit] | None) -> Invoice | None:
    """The credit note already written with this key, if any; a key reused for other lines (or amounts) is a
    conflict."""
    note = Invoice.objects.filter(kind=DocumentKind.CREDIT_NOTE, corrects=invoice, idempotency_key=key).first()
    if note is not None and wanted is not None:
        written = dict(InvoiceLine.objects.filter(invoice=note).values_list("reverses__position", "amount_nano"))
        if set(written) != {w.position for w in wanted} or any(
            w.amount_nano is not None and written[w.position] != -w.amount_nano for w in wanted
        ):
            raise InvoiceConflict(
                f"The idempotency key {key!r} was used for credit note {note.number}, with other lines.",
                param="idempotency_key",
            )
    return note


@transaction.atomic(durable=True)
def credit_note_issue(
    *, invoice_id: int, lines: Sequence[LineCredit], reason: str, idempotency_key: str, actor: Actor
) -> CreditNoteResult:
    """Issue a credit note for chosen charge lines of a finalized, paid or uncollectible invoice (each in full or in
    part, never more than is left of it). Replaying the key returns the first credit note."""
    reason, key = reason_clean(reason), _key_clean(idempotency_key)
    if key == VOID_KEY:
        raise ApplicationError(f"the idempotency key {VOID_KEY!r} is kept for voids", param="idempotency_key")
    if not lines:
        raise ApplicationError("name at least one line to credit", param="lines")
    positions = [line.position for line in lines]
    if len(set(positions)) != len(positions):
        raise ApplicationError("a line is named twice", param="lines")
    for wanted in lines:
        if wanted.amount_nano is not None and wanted.amount_nano <= 0:
            raise ApplicationError(f"the amount for line {wanted.position} must be more than zero", param="lines")
    invoice = invoice_locked(invoice_id)
    replay = _replay(invoice, key, lines)
    if replay is not None:
        return CreditNoteResult(replay, False)
    if invoice.status not in CREDITABLE:
        raise InvoiceConflict(
            f"Invoice {invoice.number or invoice.pk} is {invoice.status}; only a finalized, paid or uncollectible "
            "invoice can be credited.",
            param="invoice",
        )
    by_position = {line.position: line for line in InvoiceLine.objects.filter(invoice=invoice)}
    credited = credited_by_line(invoice_id=invoice.pk)
    reversals = []
    for wanted in lines:
        line = by_position.get(wanted.position)
        if line is None:
            raise ApplicationError(f"invoice {invoice.number} has no line {wanted.position}", param="lines")
        if line.kind not in CHARGE_KINDS:
            raise ApplicationError(
                f"line {line.position} is {line.get_kind_display().lower()}, not a charge; only charges are credited "
                "(a void reverses everything)",
                param="lines",
            )
        left = line.amount_nano - credited.get(line.pk, 0)
        amount = left if wanted.amount_nano is None else wanted.amount_nano
        if amount > left or left <= 0:
            raise InvoiceConflict(
                f"line {line.position} has {format_amount(max(left, 0))} left to credit; "
                f"{format_amount(amount)} is more than that",
                param="lines",
            )
        reversals.append((line, amount))
    note = _write(invoice, reversals, reason=reason, key=key, actor=actor)
    if invoice.status in VOIDABLE and not invoice.stripe_invoice_id and amount_due_minor(invoice=invoice) == 0:
        # Nothing is left due and Stripe never asked for it: settled, as Stripe settles an invoice credited in full.
        from billing.invoicing.services.collection import invoice_paid

        invoice_paid(invoice_id=invoice.pk, amount_paid_minor=0)
    if invoice.status in VOIDABLE and invoice.stripe_invoice_id and note.total_minor < 0:
        from billing.invoicing.tasks import credit_note_stripe_push_task

        transaction.on_commit(lambda: credit_note_stripe_push_task.delay(note.pk), robust=True)
    return CreditNoteResult(note, True)


def _void_reversals(invoice: Invoice) -> list[tuple[InvoiceLine, int]]:
    credited = credited_by_line(invoice_id=invoice.pk)
    reversals = []
    for line in InvoiceLine.objects.filter(invoice=invoice).exclude(kind__in=RECORD_KINDS).order_by("position"):
        left = line.amount_nano - credited.get(line.pk, 0)
        if left:
            reversals.append((line, left))
    return reversals


def void_reversible(invoice: Invoice) -> bool:
    """Whether a void's credit note can reverse what is left on the invoice: not when earlier credit notes gave
    back more than the invoice left due (reversing the rest would bill the customer)."""
    return sum(amount for line, amount in _void_reversals(invoice) if line.kind != LineKind.CARRY) >= 0


def invoice_void_record(*, invoice: Invoice, reason: str, actor: Actor) -> Invoice | None:
    """Void the locked invoice here (Stripe's side is the caller's): the credit note of everything left on it, then
    `void`, in the caller's transaction. Returns the credit note (None when nothing was left to reverse)."""
    reversals = _void_reversals(invoice)
    note = _write(invoice, reversals, reason=reason, key=VOID_KEY, actor=actor) if reversals else None
    invoice.status = InvoiceStatus.VOID
    invoice.stripe_status = "void" if invoice.stripe_invoice_id else invoice.stripe_status
    invoice.voided_at = timezone.now()
    invoice.next_payment_attempt_at = None
    invoice.save(update_fields=["status", "stripe_status", "voided_at", "next_payment_attempt_at"])
    invoice_action_record(
        invoice, "invoicing.void", reason=reason, actor=actor, detail={"credit_note": note.number if note else None}
    )
    # A void invoice no longer holds the organization's postpaid use.
    postpaid_restore(organization_id=invoice.organization_id)
    return note


def _stripe_void(invoice: Invoice) -> None:
    """Void Stripe's invoice first: if Stripe cannot (it was paid meanwhile), nothing is written here."""
    client = stripe_client()
    try:
        remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
        if remote.status == "void":
            return
        if remote.status == "paid":
            raise InvoiceConflict(
                f"Stripe's invoice {remote.id} was paid; the invoice is being marked paid. Issue a credit note "
                "instead of a void.",
                param="invoice",
            )
        client.v1.invoices.void_invoice(
            invoice.stripe_invoice_id, options={"idempotency_key": f"invoice-{invoice.pk}-void"}
        )
    except stripe.StripeError as exc:
        raise StripeUnavailable(f"Stripe did not void the invoice ({exc.user_message or exc}); try again.") from exc


@transaction.atomic(durable=True)
def invoice_void(*, invoice_id: int, reason: str, actor: Actor) -> CreditNoteResult:
    """Void a finalized or uncollectible invoice: void at Stripe, then the credit note of all its lines (what is
    left of them after earlier credit notes) and `void`. Replaying returns the void's credit note."""
    reason = reason_clean(reason)
    invoice = invoice_locked(invoice_id)
    if invoice.status == InvoiceStatus.VOID:
        note = _replay(invoice, VOID_KEY, None)
        if note is None:
            raise InvoiceConflict(f"Invoice {invoice.number} was voided with no credit note.", param="invoice")
        return CreditNoteResult(note, False)
    if invoice.status not in VOIDABLE:
        raise InvoiceConflict(
            f"Invoice {invoice.number or invoice.pk} is {invoice.status}; only a finalized or uncollectible invoice "
            "can be voided (issue a credit note to correct a paid one).",
            param="invoice",
        )
    if not void_reversible(invoice):
        raise InvoiceConflict(
            f"Earlier credit notes gave back more than invoice {invoice.number} left due; it cannot be voided. Mark "
            "it uncollectible, or let it be paid.",
            param="invoice",
        )
    if invoice.stripe_invoice_id:
        _stripe_void(invoice)
    note = invoice_void_record(invoice=invoice, reason=reason, actor=actor)
    if note is None:
        raise InvoiceConflict(f"Invoice {invoice.number} has nothing to reverse.", param="invoice")
    return CreditNoteResult(note, True)


def credit_note_stripe_push(*, credit_note_id: int) -> Invoice:
    """Lower Stripe's open invoice by the credit note (a Stripe credit note, keyed by ours), at most by what Stripe
    still asks: the rest is already the customer's credit in the ledger. Nothing when Stripe's invoice is no longer
    open (a payment that came first is booked as credit, so the ledger is right either way)."""
    note = Invoice.objects.select_related("corrects").get(pk=credit_note_id, kind=DocumentKind.CREDIT_NOTE)
    invoice = note.corrects
    if note.stripe_credit_note_id or invoice is None or not invoice.stripe_invoice_id:
        return note
    client = stripe_client()
    remote = client.v1.invoices.retrieve(invoice.stripe_invoice_id)
    amount = min(-note.total_minor, int(remote.amount_remaining or 0))
    if remote.status not in ("open", "uncollectible") or amount <= 0:
        return note
    params: dict[str, Any] = {
        "invoice": invoice.stripe_invoice_id,
        "lines": [
            {
                "type": "custom_line_item",
                "description": f"{note.number}: {note.reason}"[:500],
                "quantity": 1,
                "unit_amount": amount,
            }
        ],
        "memo": f"{note.number} corrects {invoice.number}",
        "metadata": {"credit_note_id": str(note.pk), "number": note.number, "invoice_id": str(invoice.pk)},
    }
    created = client.v1.credit_notes.create(
        params=params,  # type: ignore[arg-type]
        options={"idempotency_key": f"credit-note-{note.pk}"},
    )
    Invoice.objects.filter(pk=note.pk, stripe_credit_note_id="").update(stripe_credit_note_id=str(created.id))
    note.refresh_from_db()
    return note
