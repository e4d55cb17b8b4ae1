"""Invoicing errors: ApplicationErrors, so every API renders them in the one error shape."""

from core.errors import ApplicationError, ErrorKind


class InvoiceNotFound(ApplicationError):
    kind = ErrorKind.NOT_FOUND
    code = "invoice_not_found"


class InvoiceConflict(ApplicationError):
    """The close cannot go on in this state (an earlier period still open, a period not yet over)."""

    kind = ErrorKind.CONFLICT
    code = "invoice_conflict"


class InvoiceUnbalanced(ApplicationError):
    """The period's lines do not add up to its ledger: the close stops before anything is finalized."""

    kind = ErrorKind.CONFLICT
    code = "invoice_unbalanced"
