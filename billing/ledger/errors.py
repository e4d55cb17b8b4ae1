"""Ledger errors. They are ApplicationErrors, so every API renders them in the one error shape."""

from core.errors import ApplicationError, ErrorKind
from core.money import format_amount


class InsufficientCredit(ApplicationError):
    """The wallet (plus its overdraft) cannot cover the amount. `spendable_nano` says what it could cover."""

    kind = ErrorKind.INSUFFICIENT_CREDIT
    code = "insufficient_credit"

    def __init__(self, *, spendable_nano: int, requested_nano: int, currency: str = "USD"):
        self.spendable_nano = max(spendable_nano, 0)
        self.requested_nano = requested_nano
        super().__init__(
            f"Not enough credit: {format_amount(requested_nano)} {currency} needed, "
            f"{format_amount(self.spendable_nano)} {currency} available. Add credit to continue.",
            extra={"spendable": format_amount(self.spendable_nano)},
        )


class NotFound(ApplicationError):
    """An id that does not exist (or belongs to another organization: callers never learn the difference)."""

    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class IdempotencyConflict(ApplicationError):
    """An idempotency key replayed with different parameters: the first operation stands, this one is refused."""

    kind = ErrorKind.CONFLICT
    code = "idempotency_conflict"


class HoldNotOpen(ApplicationError):
    """A capture of a hold that was already released or expired."""

    kind = ErrorKind.CONFLICT
    code = "hold_not_open"
