"""Staff: the caller's own staff token. POST issues a new one (rotating the one in force), DELETE revokes it.

A script can rotate its token on a schedule, and a staff member who lost theirs (or fears it leaked) can revoke it
from a browser session. Another staff member's token is managed with `manage.py staff_token`.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services.stafftokens import staff_token_display, staff_token_issue, staff_token_revoke

TAG = "staff: token"


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="The new token, shown only in this response: only its hash is kept.")
    key_id = serializers.CharField(help_text="The token's public part, as the audit log names it.")


class RevokedOutputSerializer(serializers.Serializer):
    revoked = serializers.CharField(help_text="The revoked token's public part.")


class StaffTokenApi(APIView):
    permission_classes = [IsAdminUser]

    @extend_schema(
        tags=[TAG],
        operation_id="staff_token_rotate",
        request=None,
        responses={201: TokenOutputSerializer},
        description="A new token for the caller; the token in force (the one this request may carry) stops working "
        "at once. The response is the only place the new token is shown.",
    )
    def post(self, request: Request) -> Response:
        token, secret = staff_token_issue(user=request.user, replace=True, actor=request.user)  # type: ignore[arg-type]
        response = Response({"token": secret, "key_id": token.key_id}, status=status.HTTP_201_CREATED)
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(
        tags=[TAG],
        operation_id="staff_token_revoke",
        request=None,
        responses={
            200: RevokedOutputSerializer,
            404: OpenApiResponse(description="The caller has no token in force."),
        },
        description="Revoke the caller's token in force; it stops working at once (this request's included).",
    )
    def delete(self, request: Request) -> Response:
        revoked = staff_token_revoke(user=request.user, actor=request.user)  # type: ignore[arg-type]
        if revoked is None:
            raise exceptions.NotFound("You have no staff token in force.")
        return Response({"revoked": staff_token_display(revoked)})
