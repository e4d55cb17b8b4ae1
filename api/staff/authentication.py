"""How scripts authenticate to the staff REST API: a staff token (`manage.py staff_token`) in the Authorization
header, as `Token <token>` or `Bearer <token>`. Wrong tokens count towards the log-in throttle like wrong passwords
(accounts.login_throttle): past its limit, a client address gets 429 for every token it sends until the window
ends."""

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from accounts.login_throttle import failure_record, throttle_check
from accounts.models import StaffToken

KEYWORDS = ("token", "bearer")


class StaffTokenAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[User, StaffToken] | None:
        # Imported here: DRF imports this class while api.errors (which the services use) is still loading.
        from accounts.selectors.stafftokens import staff_token_authenticate
        from accounts.services.stafftokens import staff_token_used

        parts = get_authorization_header(request).split()
        if not parts or parts[0].decode("latin-1").lower() not in KEYWORDS:
            return None  # no token: the session (or nothing) decides
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be `Token <token>`, with no spaces.")
        wait = throttle_check(request=request._request, account=None)
        if wait:
            raise exceptions.Throttled(wait=wait, detail="Too many wrong tokens from this address; try again later.")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            secret = ""
        token = staff_token_authenticate(secret=secret)
        if token is None:
            failure_record(request=request._request, account=None)
            raise exceptions.AuthenticationFailed("Invalid token, or revoked.")
        staff_token_used(token=token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Token realm="api"'


class StaffTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """How the OpenAPI schema describes the staff token."""

    target_class = StaffTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A staff token from `manage.py staff_token`: `Token st-tb-...` (or `Bearer st-tb-...`).",
        }
