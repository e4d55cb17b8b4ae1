"""Staff: how tiktoken's estimates and the model servers' reported counts compare, by model and model server
(GET /api/staff/usage/drift/?start=YYYY-MM-DD&end=YYYY-MM-DD, UTC days, both included; default the last 30)."""

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.staff.pricing.common import StaffView
from billing.usage import selectors

MAX_DAYS = 366


class DriftQuery(serializers.Serializer[Any]):
    start = serializers.DateField(required=False)
    end = serializers.DateField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        today = timezone.now().date()
        end = attrs.get("end") or today
        start = attrs.get("start") or end - timedelta(days=29)
        if start > end:
            raise serializers.ValidationError({"start": "start must be on or before end."})
        if (end - start).days >= MAX_DAYS:
            raise serializers.ValidationError({"start": f"the range can cover at most {MAX_DAYS} days."})
        return {"start": start, "end": end}


class DriftRowOutput(serializers.Serializer[Any]):
    model = serializers.CharField()
    served_by = serializers.CharField(help_text='"demo" or the model server\'s host name; "" before it was recorded')
    requests = serializers.IntegerField()
    reported = serializers.IntegerField(help_text="requests whose model server reported usage")
    flagged = serializers.IntegerField(help_text="requests flagged for drift (or an incomplete report)")
    flagged_bps = serializers.SerializerMethodField(help_text="flagged / requests, in basis points")
    estimated_input_tokens = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    estimated_output_tokens = serializers.IntegerField()
    visible_output_tokens = serializers.IntegerField(help_text="output billed, reasoning tokens excluded")

    def get_flagged_bps(self, row: selectors.DriftRow) -> int:
        return row.flagged * 10_000 // row.requests if row.requests else 0


class DriftReportApi(StaffView):
    @extend_schema(
        tags=["staff: usage"],
        summary="Token-count drift by model and model server",
        parameters=[
            OpenApiParameter("start", str, description="First UTC day (YYYY-MM-DD); default 29 days before end."),
            OpenApiParameter("end", str, description="Last UTC day (YYYY-MM-DD), included; default today."),
        ],
        responses={200: DriftRowOutput(many=True), 400: OpenApiResponse(description="A bad date or range.")},
    )
    def get(self, request: Request) -> Response:
        query = DriftQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        start, end = selectors.day_range(first=query.validated_data["start"], last=query.validated_data["end"])
        rows = selectors.usage_drift_report(start=start, end=end)
        return Response(DriftRowOutput(rows, many=True).data)
