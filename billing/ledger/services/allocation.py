"""Allocating a charge to the grants that pay for it (DESIGN decision 4), by the PL/pgSQL function
ledger_allocate (billing/ledger/functions/ledger_allocate.sql), where the consumption order is written.

Called in the transaction that charged the wallet, after the wallet row was locked by that charge, so no other
allocation on the wallet can run at the same time.
"""

from django.db import connection

from billing.ledger import sql


def draws_allocate(*, wallet_id: int, transaction_id: int, amount_nano: int) -> None:
    """Draw `amount_nano` from the wallet's grants in consumption order; what they cannot cover is unfunded."""
    if amount_nano <= 0:
        return
    with connection.cursor() as cursor:
        cursor.execute(sql.ALLOCATE, {"wallet_id": wallet_id, "transaction_id": transaction_id, "amount": amount_nano})
