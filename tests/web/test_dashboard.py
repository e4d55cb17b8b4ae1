"""The dashboard: credit, burn rate and runway, notices, charts, recent requests."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.services import apikey_create
from billing.ledger import services as ledger
from billing.notifications.services import notification_settings_update
from core.money import parse_amount
from tests.web.conftest import record


def grant(org, amount: str, key: str, **options) -> None:
    ledger.grant_create(
        organization_id=org.pk,
        kind="paid",
        amount_nano=parse_amount(amount),
        idempotency_key=key,
        actor="test",
        **options,
    )


def shown(page: str, name: str) -> str:
    match = re.search(rf'data-testid="{name}">(.*?)</div>', page, re.S)
    assert match, name
    return re.sub(r"<[^>]+>", " ", match.group(1)).split()[0] if match.group(1).strip() else ""


def test_a_new_organization_shows_zero_and_no_runway(as_alice):
    page = as_alice.get("/").content.decode()
    assert 'data-testid="balance-available">$0.00</div>' in page
    assert shown(page, "runway") == "—"
    assert "No requests yet." in page


def test_credit_held_expiring_burn_and_runway(as_vera, org_a, book):
    grant(org_a, "20", "paid")
    grant(org_a, "5", "promo", expires_at=timezone.now() + timedelta(days=10))
    wallet = ledger.wallet_get_or_create(organization_id=org_a.pk)
    ledger.hold_place(wallet_id=wallet.pk, amount_nano=parse_amount("1.5"), idempotency_key="h", actor="test")
    # $7 over the last 7 days: $1 a day; available $23.50 lasts 23.5 days.
    record(org_a, at=timezone.now() - timedelta(days=2), charge_nano=parse_amount("7"))
    page = as_vera.get("/").content.decode()
    assert 'data-testid="balance-available">$23.50</div>' in page
    assert shown(page, "balance-held") == "$1.50"
    assert shown(page, "balance-expiring") == "$5.00"
    assert shown(page, "burn-rate") == "$1.00"
    assert shown(page, "runway") == "23.5"


def test_notices_show_when_their_conditions_hold(as_vera, alice, org_a, book):
    grant(org_a, "3", "paid")
    page = as_vera.get("/").content.decode()
    assert 'data-testid="notice-low-balance"' in page  # $3 is below the default $5
    assert "below your threshold of $5.00" in page
    assert 'data-testid="notice-credit-expiring"' not in page
    grant(org_a, "4", "promo", expires_at=timezone.now() + timedelta(days=3))
    page = as_vera.get("/").content.decode()
    assert 'data-testid="notice-low-balance"' not in page  # $7 now
    assert 'data-testid="notice-credit-expiring"' in page and "$4.00 expires within 7 days" in " ".join(page.split())
    notification_settings_update(
        organization_id=org_a.pk,
        actor=alice,
        low_balance_enabled=True,
        low_balance_threshold_nano=parse_amount("100"),
        credit_expiring_enabled=True,
        credit_expiring_days=2,
        email_enabled=False,
    )
    page = as_vera.get("/").content.decode()
    assert 'data-testid="notice-low-balance"' in page
    assert 'data-testid="notice-credit-expiring"' not in page  # 3 days away, outside the 2-day window


def test_charts_by_model_key_and_workflow(as_vera, org_a, book):
    key = apikey_create(organization_id=org_a.pk, name="my-key")[0]
    record(org_a, at=timezone.now() - timedelta(hours=1), model="gpt-4o", key=key, workflow="flow-x")
    by_model = as_vera.get("/").content.decode()
    assert "Spend per day by model" in by_model and "gpt-4o ·" in by_model
    by_key = as_vera.get("/?by=key").content.decode()
    assert "Tokens per day by API key" in by_key and "my-key (" in by_key
    by_workflow = as_vera.get("/?by=workflow").content.decode()
    assert "flow-x ·" in by_workflow
    assert "Spend per day by model" in as_vera.get("/?by=<script>").content.decode()


def test_query_count_does_not_depend_on_the_data(as_alice, org_a, book):
    key = apikey_create(organization_id=org_a.pk, name="k")[0]
    grant(org_a, "10", "paid")
    now = timezone.now()

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert as_alice.get("/?by=key").status_code == 200
        return len(captured)

    record(org_a, at=now - timedelta(hours=1), key=key)
    few = queries()
    for n in range(60):
        record(org_a, at=now - timedelta(days=n % 30, minutes=n), key=key if n % 2 else None, workflow=f"w{n % 4}")
    assert queries() == few


def axis_labels(page: str, chart_title: str) -> list[str]:
    """The y-axis labels of one chart of the page, bottom to top."""
    svg = re.search(rf'aria-label="{re.escape(chart_title)}".*?</svg>', page, re.S)
    assert svg, chart_title
    return re.findall(r'<text x="\d+" y="[\d.]+" text-anchor="end">([^<]*)</text>', svg.group(0))


def test_a_runway_of_more_than_a_year_reads_so(as_vera, org_a, book):
    grant(org_a, "500", "big")
    # A tenth of a cent over the week against $500: 3.5 million days at that pace.
    record(org_a, at=timezone.now() - timedelta(days=1), charge_nano=parse_amount("0.001"))
    page = as_vera.get("/").content.decode()
    assert "More than a year" in page
    assert "days" not in re.search(r'data-testid="runway">(.*?)</div>', page, re.S).group(1)


def test_a_runway_just_under_a_year_is_still_counted_in_days(as_vera, org_a, book):
    grant(org_a, "364", "year")
    record(org_a, at=timezone.now() - timedelta(days=1), charge_nano=parse_amount("7"))
    page = as_vera.get("/").content.decode()
    assert shown(page, "runway") == "364.0"


@pytest.mark.parametrize("charge", ["0.000000003", "0.00002", "0.00015", "0.0009"])
def test_tiny_spend_has_distinct_axis_labels(as_vera, org_a, book, charge):
    record(org_a, at=timezone.now() - timedelta(hours=1), charge_nano=parse_amount(charge))
    page = as_vera.get("/").content.decode()
    labels = axis_labels(page, "Spend per day by model")
    assert len(labels) == 5 and len(set(labels)) == 5, labels
    assert labels[0] == "$0"


def test_staff_see_a_link_to_the_pricing_console(as_vera, vera, org_a):
    assert 'data-testid="nav-staff"' not in as_vera.get("/").content.decode()
    vera.is_staff = True
    vera.save(update_fields=["is_staff"])
    page = as_vera.get("/").content.decode()
    assert re.search(r'<a href="/staff/pricing/" data-testid="nav-staff"[^>]*>Staff</a>', page)


def test_a_tiny_charge_never_reads_as_zero(as_vera, org_a, book):
    """8 billionths of a dollar is not $0.00 (it was, at six places), and a whole-cent one keeps two places."""
    grant(org_a, "20", "paid")
    record(org_a, at=timezone.now() - timedelta(hours=1), charge_nano=80)
    page = as_vera.get("/").content.decode()
    assert "$0.00000008" in page
    assert 'data-testid="balance-available">$20.00</div>' in page
    assert shown(page, "balance-held") == "$0.00"  # a real zero still reads as one
