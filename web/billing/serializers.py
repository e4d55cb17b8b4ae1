"""What the billing pages' JSON endpoints answer."""

from typing import Any

from django.urls import reverse

from billing.payments.models import TopUp
from core.money import format_amount, money_display


def top_up_json(top_up: TopUp) -> dict[str, Any]:
    return {
        "id": top_up.pk,
        "kind": top_up.kind,
        "status": top_up.status,
        "status_display": top_up.status_label,
        "amount": format_amount(top_up.amount_nano),
        "amount_nano": top_up.amount_nano,
        "amount_display": money_display(top_up.amount_nano, top_up.currency),
        "currency": top_up.currency,
        "card_last4": top_up.card_last4,
        "failure_message": top_up.failure_message,
        "failure_code": top_up.failure_code,
        "receipt_number": top_up.receipt_number,
        "created_at": top_up.created_at.isoformat() if top_up.created_at else None,
        "succeeded_at": top_up.succeeded_at.isoformat() if top_up.succeeded_at else None,
        "urls": {
            "status": reverse("billing_top_up_status", args=[top_up.pk]),
            "pay": reverse("billing_top_up_pay", args=[top_up.pk]),
            "sync": reverse("billing_top_up_sync", args=[top_up.pk]),
            "receipt": reverse("billing_receipt", args=[top_up.pk])
            if top_up.status == TopUp.Status.SUCCEEDED
            else None,
        },
    }
