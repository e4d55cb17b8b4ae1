"""POST /v1/usage/events: usage reported server-to-server; billing.metering.events rates, charges and records it."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone

from api.gateway import params
from api.gateway.http import gateway_view, key_authenticate
from billing.metering.events import usage_events_record
from core.orm import orm_call


@gateway_view("POST")
async def usage_events(request: HttpRequest) -> JsonResponse:
    key = await key_authenticate(request, endpoint="usage")
    body, _ = params.json_body(request)
    events = body.get("events")
    limit = settings.GATEWAY_USAGE_EVENTS_MAX_BATCH
    if not isinstance(events, list) or not events:
        raise params.invalid("'events' must be a non-empty array of usage events.", param="events")
    if len(events) > limit:
        raise params.invalid(f"Send at most {limit} events per request; this one has {len(events)}.", param="events")
    results = await orm_call(usage_events_record, key=key, events=events, now=timezone.now())
    counts = {
        status: sum(1 for r in results if r["status"] == status) for status in ("recorded", "duplicate", "rejected")
    }
    return JsonResponse({"object": "list", "data": results, **counts})
