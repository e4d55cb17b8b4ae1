"""JSON endpoints the billing pages' scripts call (session and CSRF protected, MANAGE_BILLING only).

They are thin: read the JSON body, call one service, answer JSON. Errors come out in the one error shape
(api.errors), e.g. a declined card is a 402 with Stripe's message for the card holder.
"""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.ids import is_id_text
from api.parsers import SafeJSONParser
from billing.ledger import selectors as ledger_selectors
from billing.payments import selectors, services
from billing.payments.errors import NotFound
from core.errors import ApplicationError
from core.money import format_amount, money_display
from web.billing.permissions import ManagesBilling
from web.billing.serializers import top_up_json


def _body(request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, dict):
        raise ApplicationError("the body must be a JSON object", code="invalid_body")
    return data


def object_id(raw: str) -> int:
    """An id from the URL; anything that is not one reads exactly like an unknown id."""
    if not is_id_text(raw):
        raise NotFound("top-up not found", param="top_up_id")
    return int(raw)


def _organization_id(request: Request) -> int:
    return int(request.membership.organization_id)  # type: ignore[attr-defined]


@extend_schema(exclude=True)
class BillingApi(APIView):
    permission_classes = [ManagesBilling]
    # JSON only (a form post is 415); a body nested too deeply to parse is a 400, not a 500.
    parser_classes = [SafeJSONParser]


class TopUpStartApi(BillingApi):
    """POST {"amount": "20.00", "card": "new" | "saved"} -> the top-up, and (for a new card) the PaymentIntent's
    client secret for stripe.confirmCardPayment with the card's details."""

    def post(self, request: Request) -> Response:
        body = _body(request)
        started = services.topup_start(
            organization_id=_organization_id(request),
            amount=body.get("amount"),
            card=body.get("card", "new"),
            actor=request.user,
        )
        return Response(
            {
                "top_up": top_up_json(started.top_up),
                "payment_intent_client_secret": started.payment_intent_client_secret,
            },
            status=status.HTTP_201_CREATED,
        )


class TopUpPayApi(BillingApi):
    """POST {} -> charge the saved card, or (a new card) record what stripe.confirmCardPayment did and keep the card;
    a client secret when 3-D Secure is due."""

    def post(self, request: Request, top_up_id: str) -> Response:
        _body(request)
        charged = services.topup_pay(organization_id=_organization_id(request), top_up_id=object_id(top_up_id))
        return Response(
            {
                "top_up": top_up_json(charged.top_up),
                "payment_intent_client_secret": charged.payment_intent_client_secret,
            }
        )


class TopUpSyncApi(BillingApi):
    """POST {} after the browser's authentication step failed: the server asks Stripe and records a failure."""

    def post(self, request: Request, top_up_id: str) -> Response:
        top_up = services.topup_sync(organization_id=_organization_id(request), top_up_id=object_id(top_up_id))
        return Response({"top_up": top_up_json(top_up)})


class TopUpStatusApi(BillingApi):
    """GET -> the top-up and the wallet's available credit (the page polls this until the webhook settled it)."""

    def get(self, request: Request, top_up_id: str) -> Response:
        organization_id = _organization_id(request)
        top_up = selectors.topup_get(organization_id=organization_id, top_up_id=object_id(top_up_id))
        balance = ledger_selectors.wallet_balance(organization_id=organization_id)
        return Response(
            {
                "top_up": top_up_json(top_up),
                "balance": {
                    "available": format_amount(balance.available_nano),
                    "available_nano": balance.available_nano,
                    "available_display": money_display(balance.available_nano, balance.currency),
                    "currency": balance.currency,
                },
            }
        )


class AutoTopUpCardApi(BillingApi):
    """POST {} -> a SetupIntent client secret that saves a card for automatic charges."""

    def post(self, request: Request) -> Response:
        secret = services.auto_topup_card_start(organization_id=_organization_id(request), actor=request.user)
        return Response({"setup_intent_client_secret": secret}, status=status.HTTP_201_CREATED)


class AutoTopUpCardConfirmApi(BillingApi):
    """POST {"setup_intent_id": "seti_..."} after stripe.confirmCardSetup -> the saved card."""

    def post(self, request: Request) -> Response:
        config = services.auto_topup_card_save(
            organization_id=_organization_id(request),
            setup_intent_id=_body(request).get("setup_intent_id"),
            actor=request.user,
        )
        return Response({"card_last4": config.card_last4})
