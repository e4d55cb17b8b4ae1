"""Reads: an organization's notification settings, the notices due now, and who is told."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Coalesce

from accounts.models import Membership, Role
from billing.ledger import selectors as ledger
from billing.ledger.models import Grant, Wallet
from billing.notifications.models import (
    DEFAULT_LOW_BALANCE_THRESHOLD_NANO,
    MAX_EXPIRY_WINDOW_DAYS,
    NoticeKind,
    NotificationSettings,
)

# Who receives notice emails: the people who can top up.
RECIPIENT_ROLES = (Role.OWNER, Role.BILLING_ADMIN)


def notification_settings_get(*, organization_id: int) -> NotificationSettings:
    """The organization's settings, or the defaults (an unsaved row) when it never changed them."""
    found = NotificationSettings.objects.filter(organization_id=organization_id).first()
    return found or NotificationSettings(organization_id=organization_id)


@dataclass(frozen=True)
class DueNotice:
    kind: str
    dedupe_key: str
    currency: str
    detail: dict[str, Any] = field(default_factory=dict)


def notices_due(*, organization_id: int, now: datetime, prefs: NotificationSettings | None = None) -> list[DueNotice]:
    """The notices whose condition holds right now (whether or not they were sent today)."""
    prefs = prefs or notification_settings_get(organization_id=organization_id)
    if not (prefs.low_balance_enabled or prefs.credit_expiring_enabled):
        return []
    balance = ledger.wallet_balance(
        organization_id=organization_id, now=now, expiring_within_days=prefs.credit_expiring_days
    )
    day = now.date().isoformat()
    due = []
    # An organization that never had credit is not "low"; it has not started.
    if (
        prefs.low_balance_enabled
        and balance.wallet_id is not None
        and balance.available_nano < prefs.low_balance_threshold_nano
        and Grant.objects.filter(wallet_id=balance.wallet_id).exists()
    ):
        due.append(
            DueNotice(
                kind=NoticeKind.LOW_BALANCE,
                dedupe_key=f"{NoticeKind.LOW_BALANCE}:{day}",
                currency=balance.currency,
                detail={
                    "available_nano": balance.available_nano,
                    "threshold_nano": prefs.low_balance_threshold_nano,
                },
            )
        )
    if prefs.credit_expiring_enabled and balance.wallet_id is not None:
        window_end = now + timedelta(days=prefs.credit_expiring_days)
        expiring = list(
            Grant.objects.filter(
                wallet_id=balance.wallet_id, remaining_nano__gt=0, expires_at__gt=now, expires_at__lte=window_end
            )
            .order_by("expires_at")
            .values_list("remaining_nano", "expires_at")
        )
        if expiring:
            first_expiry = expiring[0][1]
            assert first_expiry is not None  # filtered on expires_at above
            due.append(
                DueNotice(
                    kind=NoticeKind.CREDIT_EXPIRING,
                    dedupe_key=f"{NoticeKind.CREDIT_EXPIRING}:{day}",
                    currency=balance.currency,
                    detail={
                        "expiring_nano": sum(amount for amount, _ in expiring),
                        "days": prefs.credit_expiring_days,
                        "first_expiry_at": first_expiry.isoformat(),
                    },
                )
            )
    return due


def organizations_to_check(*, now: datetime) -> list[int]:
    """Organizations where a notice may be due: two indexed queries instead of a look at every organization.

    Low balance: the wallet (in the organization's currency) is below its threshold and has had credit.
    Expiring: some grant with credit left expires within the longest window anyone can choose; the
    organization's own window is applied by `notices_due`.
    """
    prefs = NotificationSettings.objects.filter(organization_id=OuterRef("organization_id"))
    low = (
        Wallet.objects.filter(currency=F("organization__currency"))
        .annotate(
            threshold=Coalesce(
                prefs.values("low_balance_threshold_nano")[:1], Value(DEFAULT_LOW_BALANCE_THRESHOLD_NANO)
            ),
            enabled=Coalesce(prefs.values("low_balance_enabled")[:1], Value(True)),
            funded=Exists(Grant.objects.filter(wallet_id=OuterRef("pk"))),
        )
        .filter(enabled=True, funded=True, available_nano__lt=F("threshold"))
        .values_list("organization_id", flat=True)
    )
    expiring = (
        Grant.objects.filter(
            remaining_nano__gt=0,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(days=MAX_EXPIRY_WINDOW_DAYS),
            wallet__currency=F("wallet__organization__currency"),
        )
        .values_list("wallet__organization_id", flat=True)
        .distinct()
    )
    return sorted(set(low) | set(expiring))


def notice_recipients(*, organization_id: int) -> list[str]:
    """Email addresses of the organization's owners and billing admins."""
    emails = (
        Membership.objects.filter(organization_id=organization_id, role__in=RECIPIENT_ROLES)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    return list(dict.fromkeys(emails))
