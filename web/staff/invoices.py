"""Pages of the staff invoices console: every organization's invoices and credit notes, filtered; one invoice with
its lines, what each names in the ledger, and the staff actions (credit note, void, mark uncollectible, resend,
collect now), each with a reason. Views parse a form, call one service or selector, and render."""

import uuid
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.selectors import audit_events
from billing.invoicing import selectors
from billing.invoicing.models import CHARGE_KINDS, NANO_PER_MINOR, DocumentKind, Invoice, InvoiceLine, InvoiceStatus
from billing.invoicing.services import actions, credit_notes
from core.errors import ApplicationError, ErrorKind
from core.money import format_amount
from web.staff.invoice_forms import CreditNoteForm, InvoiceFilterForm, ReasonForm

PAGE_SIZE = 50
ACTIONS = ("void", "credit-note", "mark-uncollectible", "resend", "collect")


def _money(nano: int) -> str:
    return format_amount(nano)


@staff_member_required
def invoices_list(request: HttpRequest) -> HttpResponse:
    form = InvoiceFilterForm(request.GET or None)
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        period = data["period"]
        filters = {
            "organization_id": data["organization"],
            "status": data["status"] or None,
            "kind": data["kind"] or None,
            "period_start": datetime(period[0], period[1], 1, tzinfo=UTC) if period else None,
        }
    invoices = selectors.invoices_list(**filters).select_related("organization", "corrects")
    page = Paginator(invoices, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [{"invoice": invoice, "total": _money(invoice.total_minor * NANO_PER_MINOR)} for invoice in page]
    context = {"form": form, "page": page, "rows": rows, "section": "invoices"}
    return render(request, "staff/invoices/list.html", context, status=400 if form.is_bound and form.errors else 200)


def _invoice_or_404(invoice_id: int) -> Invoice:
    invoice = Invoice.objects.select_related("organization", "corrects").filter(pk=invoice_id).first()
    if invoice is None:
        raise Http404("no such invoice")
    return invoice


def _left(line: InvoiceLine, credited: dict[int, int]) -> int:
    """What is left of the line to credit after earlier credit notes."""
    return line.amount_nano - credited.get(line.pk, 0)


def _detail(
    request: HttpRequest,
    invoice: Invoice,
    *,
    forms: dict[str, Any] | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    lines = list(selectors.invoice_lines(invoice_id=invoice.pk).select_related("reverses"))
    credited = selectors.credited_by_line(invoice_id=invoice.pk) if invoice.kind == DocumentKind.INVOICE else {}
    rows = [
        {
            "line": line,
            "amount": _money(line.amount_nano),
            "left": _money(_left(line, credited)) if line.kind in CHARGE_KINDS else "",
        }
        for line in lines
    ]
    is_invoice = invoice.kind == DocumentKind.INVOICE
    forms = forms or {}
    context = {
        "invoice": invoice,
        "rows": rows,
        "total": _money(invoice.total_minor * NANO_PER_MINOR),
        "due": _money(selectors.amount_due_minor(invoice=invoice) * NANO_PER_MINOR),
        "credit_notes": list(selectors.credit_notes_of(invoice_id=invoice.pk)) if is_invoice else [],
        "journal_url": reverse("staff-journal", args=[invoice.organization_id]),
        "events": list(audit_events(action_prefix="invoicing.").filter(target=f"Invoice:{invoice.pk}")[:50])
        if is_invoice
        else [],
        "can_credit": is_invoice and invoice.status in credit_notes.CREDITABLE,
        "credit_form": forms.get("credit-note")
        or CreditNoteForm(
            initial={"idempotency_key": uuid.uuid4().hex},
            lines=[line for line in lines if _left(line, credited) > 0 and line.kind in CHARGE_KINDS],
        ),
        "action_list": [
            ("void", "Void (with a credit note)", is_invoice and invoice.status in credit_notes.VOIDABLE),
            ("mark-uncollectible", "Mark uncollectible", is_invoice and invoice.status == InvoiceStatus.FINALIZED),
            ("resend", "Resend", is_invoice and bool(invoice.number)),
            ("collect", "Collect now", is_invoice and invoice.status in credit_notes.VOIDABLE),
        ],
        "error": error,
        "section": "invoices",
    }
    return render(request, "staff/invoices/detail.html", context, status=status)


@staff_member_required
def invoice_detail(request: HttpRequest, invoice_id: int) -> HttpResponse:
    return _detail(request, _invoice_or_404(invoice_id))


STATUS_OF = {ErrorKind.NOT_FOUND: 404, ErrorKind.CONFLICT: 409, ErrorKind.UNAVAILABLE: 503}


@staff_member_required
@require_POST
def invoice_action(request: HttpRequest, invoice_id: int, action: str) -> HttpResponse:
    """One staff action on the invoice; on success back to the invoice (or the credit note it made), else the page
    again with the message, and nothing written."""
    invoice = _invoice_or_404(invoice_id)
    if action not in ACTIONS or invoice.kind != DocumentKind.INVOICE:
        raise Http404("no such action")
    actor = request.user
    assert isinstance(actor, AbstractBaseUser)  # staff_member_required
    if action == "credit-note":
        lines = [line for line in selectors.invoice_lines(invoice_id=invoice.pk) if line.kind in CHARGE_KINDS]
        form: ReasonForm = CreditNoteForm(request.POST, lines=lines)
    else:
        form = ReasonForm(request.POST)
    if not form.is_valid():
        return _detail(request, invoice, forms={action: form}, error="Check the form: " + _errors(form), status=400)
    reason = form.cleaned_data["reason"]
    try:
        if action == "credit-note":
            assert isinstance(form, CreditNoteForm)
            result = credit_notes.credit_note_issue(
                invoice_id=invoice.pk,
                lines=form.credits(),
                reason=reason,
                idempotency_key=form.cleaned_data["idempotency_key"],
                actor=actor,
            )
            messages.success(request, f"Credit note {result.credit_note.number} issued.")
            return redirect("staff-invoices-detail", invoice_id=result.credit_note.pk)
        if action == "void":
            result = credit_notes.invoice_void(invoice_id=invoice.pk, reason=reason, actor=actor)
            messages.success(request, f"Invoice {invoice.number} is void; credit note {result.credit_note.number}.")
        elif action == "mark-uncollectible":
            actions.invoice_mark_uncollectible(invoice_id=invoice.pk, reason=reason, actor=actor)
            messages.success(request, f"Invoice {invoice.number} is marked uncollectible.")
        elif action == "resend":
            sent_to = actions.invoice_resend(invoice_id=invoice.pk, reason=reason, actor=actor)
            messages.success(request, f"Invoice {invoice.number} sent again to {', '.join(sent_to)}.")
        else:
            collected = actions.invoice_collect_now(invoice_id=invoice.pk, reason=reason, actor=actor)
            outcome = "paid" if collected.status == InvoiceStatus.PAID else (collected.payment_error or "not paid")
            messages.info(request, f"Collection of invoice {invoice.number}: {outcome}.")
    except ApplicationError as exc:
        return _detail(
            request,
            _invoice_or_404(invoice.pk),
            forms={action: form},
            error=exc.message,
            status=STATUS_OF.get(exc.kind, 400),
        )
    return redirect("staff-invoices-detail", invoice_id=invoice.pk)


def _errors(form: ReasonForm) -> str:
    parts = []
    for name, errors in form.errors.items():
        text = " ".join(map(str, errors))
        parts.append(text if name == "__all__" else f"{name}: {text}")
    return "; ".join(parts)
