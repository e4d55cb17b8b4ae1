"""The write of a usage record: one statement (USAGE_INSERT), sent with the hold's settle by the gateway and on
Django's connection by `usage_record_create` (reported usage events). It writes the row, field for field."""

from dataclasses import fields, replace
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, connection, transaction

from accounts.models import Organization
from billing.pricing.models import AIModel
from billing.usage.models import UsageRecord
from billing.usage.services import USAGE_INSERT, UsageRow, usage_insert_params, usage_record_create

pytestmark = pytest.mark.django_db

# Stored as given: everything but the model (stored as its id) and the latency (stored within the column's bounds).
COMPARED = [f.name for f in fields(UsageRow) if f.name not in ("model_slug", "latency_ms")]


@pytest.fixture
def row() -> UsageRow:
    organization = Organization.objects.create(name="Acme")
    AIModel.objects.create(
        slug="m-1",
        display_name="M 1",
        encoding="o200k_base",
        context_window=1000,
        default_max_tokens=100,
        max_output_tokens=200,
    )
    return UsageRow(
        organization_id=organization.pk,
        api_key_id=None,
        source="gateway",
        request_id="req-sql",
        endpoint="chat",
        workflow="nightly",
        model_slug="m-1",
        service_tier="default",
        status="cut",
        input_tokens=1200,
        cached_input_tokens=200,
        output_tokens=300,
        estimated_input_tokens=1190,
        estimated_output_tokens=310,
        usage_reported=True,
        drift_flagged=True,
        charge_nano=123_456_789,
        quota_tokens=40,
        commitment_tokens=60,
        lines=[{"kind": "input", "tokens": 1000, "amount_nano": "100"}],
        hold_id=1,
        latency_ms=5_000_000_000,  # longer than the column holds: stored as its maximum
        created_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    )


def values(record: UsageRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in COMPARED}


def test_the_statement_writes_the_row_field_for_field(row):
    record = usage_record_create(row=row)
    assert (
        values(record)
        == values(UsageRecord.objects.get(pk=record.pk))
        == {name: getattr(row, name) for name in COMPARED}
    )
    assert record.model.slug == "m-1"
    assert (record.latency_ms, record.charge_nano, record.created_at) == (2_147_483_647, 123_456_789, row.created_at)


def test_negative_latency_is_stored_as_zero_and_a_missing_time_is_now(row):
    record = usage_record_create(row=replace(row, latency_ms=-5, created_at=None))
    record.refresh_from_db()
    assert record.latency_ms == 0 and record.created_at is not None


def test_the_statement_refuses_a_model_that_does_not_exist_rather_than_insert_nothing(row):
    # Sent with a settle, a statement that inserted nothing would let the charge land with no usage record; one
    # that fails takes the settle down with it (tests/billing/ledger/test_async_holds.py).
    with pytest.raises(IntegrityError, match="model_id"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(USAGE_INSERT, usage_insert_params(replace(row, model_slug="no-such-model")))
    assert not UsageRecord.objects.exists()
