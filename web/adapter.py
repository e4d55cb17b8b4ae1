"""allauth's account adapter, for the log-in throttle's message."""

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.http import HttpRequest

from accounts.login_throttle import account_key, credentials_login, throttle_check


class AccountAdapter(DefaultAccountAdapter):
    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        """A locked address or account gets allauth's "Too many failed login attempts" on the form. The same check
        in LoginThrottleBackend guards every other caller of authenticate(); this one only words it for people."""
        super().pre_authenticate(request, **credentials)
        login = credentials_login(credentials)
        if throttle_check(request=request, account=account_key(login) if login else None):
            raise self.validation_error("too_many_login_attempts")
