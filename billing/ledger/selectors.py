"""Reads of the ledger: balances, the journal, grants, holds, and the reconciliation of caches with the journal."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from accounts.models import Organization
from billing.ledger.errors import NotFound
from billing.ledger.models import Account, Grant, GrantDraw, JournalEntry, JournalTransaction, Wallet

EXPIRING_SOON_DAYS = 30


@dataclass(frozen=True)
class Balance:
    organization_id: int
    wallet_id: int | None
    currency: str
    available_nano: int
    held_nano: int
    overdraft_limit_nano: int
    # Credit with an expiry within `expiring_within_days` (including expired credit not yet swept).
    expiring_soon_nano: int
    expiring_within_days: int
    next_expiry_at: datetime | None

    @property
    def spendable_nano(self) -> int:
        return self.available_nano + self.overdraft_limit_nano


def wallet_of(*, organization_id: int) -> Wallet | None:
    """The organization's wallet in its own currency, if it has one yet."""
    return Wallet.objects.filter(organization_id=organization_id, currency=F("organization__currency")).first()


def wallet_balance(
    *, organization_id: int, now: datetime | None = None, expiring_within_days: int = EXPIRING_SOON_DAYS
) -> Balance:
    """Available, held and soon-expiring credit. An organization without a wallet yet has a zero balance."""
    organization = Organization.objects.filter(pk=organization_id).only("currency").first()
    if organization is None:
        raise NotFound("organization not found", param="organization_id")
    wallet = Wallet.objects.filter(organization_id=organization_id, currency=organization.currency).first()
    if wallet is None:
        return Balance(organization_id, None, organization.currency, 0, 0, 0, 0, expiring_within_days, None)
    now = now or timezone.now()
    expiring = Grant.objects.filter(
        wallet=wallet, remaining_nano__gt=0, expires_at__lte=now + timedelta(days=expiring_within_days)
    ).aggregate(total=Sum("remaining_nano"))
    next_expiry = (
        Grant.objects.filter(wallet=wallet, remaining_nano__gt=0, expires_at__isnull=False)
        .order_by("expires_at")
        .values_list("expires_at", flat=True)
        .first()
    )
    return Balance(
        organization_id=organization_id,
        wallet_id=wallet.pk,
        currency=wallet.currency,
        available_nano=wallet.available_nano,
        held_nano=wallet.held_nano,
        overdraft_limit_nano=wallet.overdraft_limit_nano,
        expiring_soon_nano=expiring["total"] or 0,
        expiring_within_days=expiring_within_days,
        next_expiry_at=next_expiry,
    )


def journal_list(*, wallet_id: int) -> QuerySet[JournalTransaction]:
    """The wallet's journal, newest first, with entries and draws loaded."""
    return JournalTransaction.objects.filter(wallet_id=wallet_id).prefetch_related("entries", "draws").order_by("-id")


def grants_list(*, wallet_id: int) -> QuerySet[Grant]:
    return Grant.objects.filter(wallet_id=wallet_id).order_by("-id")


def wallet_reconcile(*, wallet_id: int) -> list[str]:
    """Check the wallet's caches against its journal; returns the discrepancies (empty when all agree).

    - available and held equal the sums of their journal accounts;
    - grants: remaining = amount - what was drawn from them; never negative;
    - sum(remaining) - unfunded = available + held (all credit is accounted for by a grant or is owed);
    - unfunded equals the sum of the unfunded draws.
    """
    wallet = Wallet.objects.get(pk=wallet_id)
    problems = []
    sums = dict(
        JournalEntry.objects.filter(transaction__wallet_id=wallet_id)
        .values_list("account")
        .annotate(total=Sum("amount_nano"))
        .values_list("account", "total")
    )
    for account, cached in ((Account.AVAILABLE, wallet.available_nano), (Account.HELD, wallet.held_nano)):
        if sums.get(account, 0) != cached:
            problems.append(f"{account}: cached {cached}, journal {sums.get(account, 0)}")
    if sum(sums.values()) != 0:
        problems.append(f"journal does not balance: {sum(sums.values())}")
    drawn = dict(
        GrantDraw.objects.filter(grant__wallet_id=wallet_id)
        .values_list("grant_id")
        .annotate(total=Sum("amount_nano"))
        .values_list("grant_id", "total")
    )
    remaining_total = 0
    for grant in Grant.objects.filter(wallet_id=wallet_id):
        remaining_total += grant.remaining_nano
        if grant.amount_nano - drawn.get(grant.pk, 0) != grant.remaining_nano:
            problems.append(f"grant {grant.pk}: remaining {grant.remaining_nano}, drawn {drawn.get(grant.pk, 0)}")
    unfunded = (
        GrantDraw.objects.filter(Q(grant__isnull=True), transaction__wallet_id=wallet_id).aggregate(
            total=Sum("amount_nano")
        )["total"]
        or 0
    )
    if unfunded != wallet.unfunded_nano:
        problems.append(f"unfunded: cached {wallet.unfunded_nano}, draws {unfunded}")
    if remaining_total - wallet.unfunded_nano != wallet.available_nano + wallet.held_nano:
        problems.append(
            f"grants ({remaining_total} left, {wallet.unfunded_nano} owed) do not cover "
            f"available + held ({wallet.available_nano} + {wallet.held_nano})"
        )
    return problems
