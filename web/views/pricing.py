"""/pricing/: the public price list, generated from the price book in effect now."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from billing.pricing.selectors import catalog


def pricing(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    entries = catalog(at=now)
    context = {
        "chat": [e for e in entries if e.kind == "chat"],
        "embedding": [e for e in entries if e.kind == "embedding"],
        "any_request_fee": any(e.request_fee_nano for e in entries),
        "now": now,
    }
    return render(request, "web/pricing.html", context)
