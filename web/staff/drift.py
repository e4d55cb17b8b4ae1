"""The staff console's drift report: by model and model server, how often tiktoken's estimates and the server's
reported counts were apart past the tolerance, and how far apart their totals were (GET /api/staff/usage/drift/ is
the same report for programs)."""

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from api.staff.usage import MAX_DAYS
from billing.usage import selectors


class DriftForm(forms.Form):
    """UTC days, both included; default the last 30 (as the REST report)."""

    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        end = data.get("end") or timezone.now().date()
        start = data.get("start") or end - timedelta(days=29)
        if start > end:
            raise forms.ValidationError("From must be on or before To.")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError(f"The range can cover at most {MAX_DAYS} days.")
        return {"start": start, "end": end}


def _difference(reported: int, estimated: int) -> float | None:
    """(reported - estimated) / estimated over the rows' totals, in percent; None when nothing was estimated."""
    return (reported - estimated) * 100 / estimated if estimated else None


def _row(row: selectors.DriftRow) -> dict[str, Any]:
    return {
        "model": row.model,
        "served_by": row.served_by,
        "requests": row.requests,
        "reported": row.reported,
        "flagged": row.flagged,
        "flagged_percent": row.flagged * 100 / row.requests if row.requests else 0,
        "input": _difference(row.input_tokens, row.estimated_input_tokens),
        "output": _difference(row.visible_output_tokens, row.estimated_output_tokens),
    }


@staff_member_required
def drift_report(request: HttpRequest) -> HttpResponse:
    form = DriftForm(request.GET or None)
    # Unfiltered, the page shows the default range, its fields left empty.
    checked = form if form.is_bound else DriftForm({})
    days: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    if checked.is_valid():
        days = checked.cleaned_data
        start, end = selectors.day_range(first=days["start"], last=days["end"])
        rows = [_row(row) for row in selectors.usage_drift_report(start=start, end=end)]
    context = {"form": form, "rows": rows, "days": days, "section": "drift"}
    return render(request, "staff/pricing/drift.html", context, status=400 if form.errors else 200)
