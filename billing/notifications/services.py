"""Writes: notification settings, and the notices themselves (each at most once per kind per day).

A notice is claimed by inserting its row under a unique (organization, dedupe key): two checks racing on the
same day both try, one inserts, the other finds the row. The email is claimed the same way (a conditional
UPDATE of `emailed_at`), after commit, so a notice is emailed at most once; a failed send un-claims it and
the next check retries.
"""

import logging
from datetime import datetime
from functools import partial

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from accounts.models import Organization
from accounts.services import audit_record
from billing.notifications import selectors
from billing.notifications.models import MAX_EXPIRY_WINDOW_DAYS, Notice, NoticeKind, NotificationSettings
from billing.webhooks.models import EventType
from billing.webhooks.services import webhook_event_emit
from core.errors import ApplicationError
from core.money import MAX_AMOUNT_NANO, format_amount, money_display

logger = logging.getLogger(__name__)


def _flag(value: object, *, param: str) -> bool:
    if not isinstance(value, bool):
        raise ApplicationError(f"{param} must be true or false", param=param)
    return value


@transaction.atomic
def notification_settings_update(
    *,
    organization_id: int,
    actor: User | None,
    low_balance_enabled: bool,
    low_balance_threshold_nano: int,
    credit_expiring_enabled: bool,
    credit_expiring_days: int,
    email_enabled: bool,
) -> NotificationSettings:
    """Save the organization's thresholds (all of them at once, as the settings form sends them)."""
    if isinstance(low_balance_threshold_nano, bool) or not isinstance(low_balance_threshold_nano, int):
        raise ApplicationError("the threshold must be a whole number of nano-units", param="low_balance_threshold")
    if not 0 < low_balance_threshold_nano <= MAX_AMOUNT_NANO:
        raise ApplicationError(
            f"the threshold must be greater than zero and at most {format_amount(MAX_AMOUNT_NANO)}",
            param="low_balance_threshold",
        )
    if isinstance(credit_expiring_days, bool) or not isinstance(credit_expiring_days, int):
        raise ApplicationError("the number of days must be a whole number", param="credit_expiring_days")
    if not 1 <= credit_expiring_days <= MAX_EXPIRY_WINDOW_DAYS:
        raise ApplicationError(
            f"the number of days must be between 1 and {MAX_EXPIRY_WINDOW_DAYS}", param="credit_expiring_days"
        )
    values = {
        "low_balance_enabled": _flag(low_balance_enabled, param="low_balance_enabled"),
        "low_balance_threshold_nano": low_balance_threshold_nano,
        "credit_expiring_enabled": _flag(credit_expiring_enabled, param="credit_expiring_enabled"),
        "credit_expiring_days": credit_expiring_days,
        "email_enabled": _flag(email_enabled, param="email_enabled"),
    }
    if not Organization.objects.filter(pk=organization_id).exists():
        raise ApplicationError("organization not found", param="organization_id", code="not_found")
    prefs, _ = NotificationSettings.objects.update_or_create(
        organization_id=organization_id, defaults={**values, "updated_by": actor}
    )
    audit_record(
        actor=actor,
        action="notifications.update",
        organization_id=organization_id,
        target=f"NotificationSettings:{prefs.pk}",
        detail=values,
    )
    return prefs


@transaction.atomic
def notices_send(*, organization_id: int, now: datetime | None = None) -> list[Notice]:
    """Record the notices due now that were not recorded today, and email them after commit.

    Returns the notices this call created (an empty list when everything due was already sent today).
    """
    now = now or timezone.now()
    prefs = selectors.notification_settings_get(organization_id=organization_id)
    created = []
    for due in selectors.notices_due(organization_id=organization_id, now=now, prefs=prefs):
        notice, is_new = Notice.objects.get_or_create(
            organization_id=organization_id,
            dedupe_key=due.dedupe_key,
            defaults={"kind": due.kind, "detail": {**due.detail, "currency": due.currency}},
        )
        if is_new:
            created.append(notice)
            if notice.kind == NoticeKind.LOW_BALANCE:
                _balance_low_emit(notice)
        if notice.emailed_at is None and prefs.email_enabled:
            transaction.on_commit(partial(notice_email_send, notice_id=notice.pk), robust=True)
    return created


def _balance_low_emit(notice: Notice) -> None:
    """balance.low to the organization's webhooks, once per notice (at most once a day)."""
    currency = notice.detail.get("currency", "USD")
    available, threshold = int(notice.detail["available_nano"]), int(notice.detail["threshold_nano"])
    webhook_event_emit(
        organization_id=notice.organization_id,
        event_type=EventType.BALANCE_LOW,
        data={
            "balance": {
                "available": format_amount(available),
                "available_nano": available,
                "threshold": format_amount(threshold),
                "threshold_nano": threshold,
                "currency": currency,
            },
            "top_up_url": f"{settings.SITE_URL.rstrip('/')}/billing/top-up/",
        },
        idempotency_key=f"balance.low:{notice.dedupe_key}",
    )


def _email_context(notice: Notice) -> dict[str, object]:
    detail = notice.detail
    currency = detail.get("currency", "USD")

    def money(key: str) -> str:
        return money_display(int(detail.get(key, 0)), currency)

    return {
        "notice": notice,
        "organization_name": notice.organization.name,
        "available": money("available_nano"),
        "threshold": money("threshold_nano"),
        "expiring": money("expiring_nano"),
        "days": detail.get("days"),
        "first_expiry_at": datetime.fromisoformat(detail["first_expiry_at"]) if "first_expiry_at" in detail else None,
        "top_up_url": f"{settings.SITE_URL.rstrip('/')}/billing/top-up/",
        "settings_url": f"{settings.SITE_URL.rstrip('/')}/settings/notifications/",
    }


def notice_email_send(*, notice_id: int) -> bool:
    """Email a notice to the organization's owners and billing admins, once. True if this call sent it."""
    now = timezone.now()
    # The claim: of two processes sending the same notice, one updates the row and the other sees 0 rows.
    if not Notice.objects.filter(pk=notice_id, emailed_at__isnull=True).update(emailed_at=now):
        return False
    notice = Notice.objects.select_related("organization").get(pk=notice_id)
    recipients = selectors.notice_recipients(organization_id=notice.organization_id)
    if not recipients:
        Notice.objects.filter(pk=notice_id).update(recipients=[])
        return False
    context = _email_context(notice)
    subject = render_to_string(f"web/email/notice_{notice.kind}_subject.txt", context)
    body = render_to_string(f"web/email/notice_{notice.kind}_message.txt", context)
    try:
        send_mail(settings.ACCOUNT_EMAIL_SUBJECT_PREFIX + " ".join(subject.split()), body, None, recipients)
    except Exception:
        logger.exception("notice %s: the email could not be sent; the next check retries", notice_id)
        Notice.objects.filter(pk=notice_id, emailed_at=now).update(emailed_at=None)
        return False
    Notice.objects.filter(pk=notice_id).update(recipients=recipients)
    return True
