"""Domain errors: a message a person can act on, a machine-readable code, and the kind of failure.

No HTTP here: a service says *what* went wrong (the kind), and each edge says how it answers it (api.errors maps a
kind to a status and OpenAI's error type for JSON; the web pages show the message).
"""

from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID = "invalid"  # the request itself is wrong: fix it and send again
    NOT_FOUND = "not_found"  # an unknown id, or one of another organization (callers never learn which)
    CONFLICT = "conflict"  # the state changed or the operation contradicts it (replayed key, closed hold)
    GONE = "gone"  # it existed and can no longer be used (an accepted or expired invitation)
    INSUFFICIENT_CREDIT = "insufficient_credit"  # not enough credit or allowance to pay for it
    PAYMENT_DECLINED = "payment_declined"  # the card holder's bank said no
    UNAVAILABLE = "unavailable"  # a service we depend on gave no definite answer: try again later


class ApplicationError(Exception):
    """A business-rule failure with a message a person can act on."""

    kind: ErrorKind = ErrorKind.INVALID
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, code: str | None = None, extra: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.extra = extra or {}
