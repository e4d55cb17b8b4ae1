"""POST /stripe/webhook/: Stripe's signed events. See billing.payments.services.webhooks for what happens."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from api.errors import error_body, http_of
from billing.payments import services
from billing.payments.errors import WebhookRejected


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """Verify and store the event, then process it. Answers 200 once the event is stored, whatever processing did
    (a failure is kept on the event and retried by the product), 400 to anything that is not a genuine, fresh
    Stripe event."""
    if request.method != "POST":
        body = error_body("Stripe webhooks are POST requests.", error_type="invalid_request_error", code="method")
        return JsonResponse(body, status=405, headers={"Allow": "POST"})
    try:
        event = services.stripe_event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except WebhookRejected as exc:
        status_code, error_type = http_of(exc)
        return JsonResponse(error_body(exc.message, error_type=error_type, code=exc.code), status=status_code)
    event = services.stripe_event_process(stripe_event_id=event.pk)
    return JsonResponse({"received": True, "id": event.event_id, "status": event.status})
