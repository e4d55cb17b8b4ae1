"""Allocating a charge to the grants that pay for it (DESIGN decision 4).

Called in the transaction that charged the wallet, after the wallet row was locked by that charge, so no other
allocation on the wallet can run at the same time.
"""

from django.db import connection
from django.db.models import Case, F, IntegerField, Value, When

from billing.ledger import sql
from billing.ledger.models import Grant, GrantDraw, GrantKind, Wallet
from billing.ledger.services import journal

# The same order as billing.ledger.sql.GRANT_ORDER.
CONSUMPTION_ORDER = (
    Case(When(kind=GrantKind.PLAN_ALLOWANCE, then=Value(0)), default=Value(1), output_field=IntegerField()),
    F("expires_at").asc(nulls_last=True),
    Case(
        When(kind=GrantKind.PROMOTIONAL, then=Value(0)),
        When(kind=GrantKind.REFUND, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    ),
    "id",
)


def draws_allocate(*, wallet_id: int, transaction_id: int, amount_nano: int) -> None:
    """Draw `amount_nano` from the wallet's grants in consumption order; what they cannot cover is unfunded."""
    if amount_nano <= 0:
        return
    if journal.sql_fast_path():
        with connection.cursor() as cursor:
            cursor.execute(
                sql.ALLOCATE, {"wallet_id": wallet_id, "transaction_id": transaction_id, "amount": amount_nano}
            )
        return
    left = amount_nano
    draws = []
    live = Grant.objects.select_for_update().filter(wallet_id=wallet_id, remaining_nano__gt=0)
    for grant in live.order_by(*CONSUMPTION_ORDER):
        take = min(grant.remaining_nano, left)
        Grant.objects.filter(pk=grant.pk).update(remaining_nano=F("remaining_nano") - take)
        draws.append(GrantDraw(transaction_id=transaction_id, grant_id=grant.pk, amount_nano=take))
        left -= take
        if left == 0:
            break
    if left:
        draws.append(GrantDraw(transaction_id=transaction_id, grant_id=None, amount_nano=left))
        Wallet.objects.filter(pk=wallet_id).update(unfunded_nano=F("unfunded_nano") + left)
    GrantDraw.objects.bulk_create(draws)
