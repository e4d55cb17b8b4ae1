"""Wallets: created on first use, one per organization and currency; the overdraft policy lives on them."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction

from accounts.models import Organization
from accounts.services.audit import actor_label, audit_record
from billing.ledger.errors import NotFound
from billing.ledger.models import Wallet
from billing.ledger.services.journal import amount_clean
from core.errors import ApplicationError
from core.money import format_amount


def wallet_get_or_create(*, organization_id: int, currency: str | None = None) -> Wallet:
    """The organization's wallet in `currency` (default: the organization's currency), created if missing."""
    organization = Organization.objects.filter(pk=organization_id).only("currency").first()
    if organization is None:
        raise NotFound("organization not found", param="organization_id")
    currency = currency or organization.currency
    wallet = Wallet.objects.filter(organization_id=organization_id, currency=currency).first()
    if wallet is not None:
        return wallet
    try:
        with transaction.atomic():
            return Wallet.objects.create(organization_id=organization_id, currency=currency)
    except IntegrityError:  # created by a concurrent first use
        return Wallet.objects.get(organization_id=organization_id, currency=currency)


@transaction.atomic
def wallet_overdraft_set(
    *,
    organization_id: int,
    overdraft_limit_nano: int,
    actor: AbstractBaseUser | str | None,
    reason: str = "",
) -> Wallet:
    """Set the overdraft policy: 0 stops at zero (the default); a positive limit lets available go that far below.

    Lowering the limit below what the wallet already owes is refused (the CHECK constraint would be violated).
    """
    limit = amount_clean(overdraft_limit_nano, param="overdraft_limit", allow_zero=True)
    wallet = wallet_get_or_create(organization_id=organization_id)
    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    if wallet.available_nano < -limit:
        raise ApplicationError(
            f"the wallet already owes {format_amount(-wallet.available_nano)}; "
            "the overdraft limit cannot be lower than that",
            param="overdraft_limit",
        )
    previous = wallet.overdraft_limit_nano
    wallet.overdraft_limit_nano = limit
    wallet.save(update_fields=["overdraft_limit_nano"])
    audit_record(
        actor=actor,
        action="wallet.overdraft_set",
        organization_id=organization_id,
        target=f"Wallet:{wallet.pk}",
        reason=reason,
        detail={"previous": format_amount(previous), "new": format_amount(limit), "by": actor_label(actor)},
    )
    return wallet
