"""Errors of metering's services (no HTTP here: api.errors maps kinds to statuses)."""

from core.errors import ApplicationError, ErrorKind


class BudgetNotFound(ApplicationError):
    kind = ErrorKind.NOT_FOUND
    code = "not_found"


class BudgetConflict(ApplicationError):
    kind = ErrorKind.CONFLICT
    code = "budget_exists"
