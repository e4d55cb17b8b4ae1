"""Logging filters: secrets that travel in URLs are cut out of log records before any handler sees them.

An invitation link's token is the whole secret of the link (anyone holding it may accept the invitation), and
Django logs the path of every 4xx and 5xx response ("Not Found: /invitations/<token>/").
"""

import logging
import re

_INVITATION_TOKEN = re.compile(r"(/invitations/)[^/\s?#'\"]+")
REDACTED = "[token]"


def redact(text: str) -> str:
    return _INVITATION_TOKEN.sub(rf"\g<1>{REDACTED}", text)


class RedactInvitationTokens(logging.Filter):
    """Rewrite the record's message with invitation tokens replaced; the record is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/invitations/" in message:
            record.msg, record.args = redact(message), None
        # The request object Django attaches (for error emails) would render the path again.
        request = getattr(record, "request", None)
        if request is not None and "/invitations/" in getattr(request, "path", ""):
            record.request = None
        return True
