"""The staff credit API: grants, reversals, overdraft, balance, grants list and journal, over DRF with a token."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from threading import Barrier
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Organization
from billing.ledger import selectors, services
from billing.ledger.models import Grant, JournalEntry, JournalTransaction, Wallet
from core.money import parse_amount
from tests.accounts.factories import OrganizationFactory
from tests.api.staff.conftest import staff_token_for


def grants_url(org: Organization | int) -> str:
    return f"/api/staff/organizations/{getattr(org, 'pk', org)}/credit-grants/"


def ledger_rows() -> tuple[int, ...]:
    """Everything a money request could write; compared before and after a refused request."""
    return (
        JournalTransaction.objects.count(),
        JournalEntry.objects.count(),
        Grant.objects.count(),
        Wallet.objects.count(),
        *Wallet.objects.order_by("id").values_list("available_nano", "overdraft_limit_nano"),
    )


def grant(api: APIClient, org: Organization, key: str = "g-1", **body: Any) -> Any:
    payload = {"kind": "paid", "amount": "12.50", **body}
    return api.post(grants_url(org), payload, format="json", HTTP_IDEMPOTENCY_KEY=key)


def assert_error(response: Any, status: int, *, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["message"] and isinstance(error["message"], str)
    if param is not None:
        assert error["param"] == param, error
    return error


# --- granting credit ---------------------------------------------------------------------------------------------


def test_a_grant_is_created_and_the_new_balance_returned(staff_api, org_a):
    expires = timezone.now() + timedelta(days=90)
    response = grant(
        staff_api, org_a, kind="promotional", amount="12.50", expires_at=expires.isoformat(), reason="pilot"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["grant"]["kind"] == "promotional"
    assert (body["grant"]["amount"], body["grant"]["amount_nano"]) == ("12.50", 12_500_000_000)
    assert body["grant"]["remaining_nano"] == 12_500_000_000
    assert body["grant"]["expires_at"].startswith(expires.date().isoformat())
    assert (body["balance"]["available"], body["balance"]["available_nano"]) == ("12.50", 12_500_000_000)
    txn = JournalTransaction.objects.get(pk=body["grant"]["transaction_id"])
    assert (txn.actor, txn.reason) == ("dana@operator.example", "pilot")


def test_a_replay_returns_the_first_grant_with_200_and_grants_once(staff_api, org_a):
    first = grant(staff_api, org_a, key="replay-me")
    again = grant(staff_api, org_a, key="replay-me")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["grant"]["id"] == first.json()["grant"]["id"]
    assert selectors.wallet_balance(organization_id=org_a.pk).available_nano == parse_amount("12.50")


def test_the_key_can_come_in_the_body(staff_api, org_a):
    payload = {"kind": "paid", "amount": "5", "idempotency_key": "body-key"}
    first = staff_api.post(grants_url(org_a), payload, format="json")
    again = staff_api.post(grants_url(org_a), payload, format="json", HTTP_IDEMPOTENCY_KEY="body-key")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["grant"]["amount"] == "5.00"


def test_a_key_reused_for_a_different_grant_is_a_conflict(staff_api, org_a, org_b):
    grant(staff_api, org_a, key="k")
    before = ledger_rows()
    assert_error(grant(staff_api, org_a, key="k", amount="99.00"), 409, param="idempotency_key")
    assert_error(grant(staff_api, org_b, key="k"), 409, param="idempotency_key")
    assert ledger_rows() == before


def test_header_and_body_keys_must_agree(staff_api, org_a):
    response = staff_api.post(
        grants_url(org_a),
        {"kind": "paid", "amount": "1", "idempotency_key": "a"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="b",
    )
    assert_error(response, 400, param="idempotency_key")
    assert Grant.objects.count() == 0


def test_a_grant_without_an_idempotency_key_is_refused(staff_api, org_a):
    response = staff_api.post(grants_url(org_a), {"kind": "paid", "amount": "1"}, format="json")
    error = assert_error(response, 400, param="idempotency_key")
    assert "Idempotency-Key" in error["message"]
    assert Grant.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": "0.00"}, "amount"),
        ({"amount": 12.5}, "amount"),
        ({"amount": "12.5000000001"}, "amount"),
        ({"amount": "1000000000.01"}, "amount"),
        ({"amount": "1e30"}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": "12,50"}, "amount"),
        ({"amount": "twelve"}, "amount"),
        ({"amount": ""}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": ["12.50"]}, "amount"),
        ({"amount": {"value": "12.50"}}, "amount"),
        ({"kind": "plan_allowance"}, "kind"),
        ({"kind": "gift"}, "kind"),
        ({"kind": 1}, "kind"),
        ({"expires_at": "yesterday"}, "expires_at"),
        ({"expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"expires_at": 1700000000}, "expires_at"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": {"why": "no"}}, "reason"),
        ({"idempotency_key": "k" * 201}, "idempotency_key"),
    ],
)
def test_bad_grant_input_is_a_400_naming_the_field_and_writes_nothing(staff_api, org_a, body, param):
    before = ledger_rows()
    payload = {"kind": "paid", "amount": "12.50", **body}
    response = staff_api.post(grants_url(org_a), payload, format="json", HTTP_IDEMPOTENCY_KEY="bad-input")
    assert_error(response, 400, param=param)
    assert ledger_rows() == before


def test_missing_fields_are_named(staff_api, org_a):
    response = staff_api.post(grants_url(org_a), {}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    error = assert_error(response, 400)
    assert error["param"] in {"kind", "amount"}
    assert "required" in error["message"]


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b'{"kind": "paid", "amount": "12.50"', "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'"12.50"', "application/json"),
        (b"null", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"kind=paid&amount=12.50", "text/plain"),
    ],
)
def test_malformed_bodies_are_a_4xx_and_write_nothing(staff_api, org_a, raw, content_type):
    before = ledger_rows()
    response = staff_api.generic("POST", grants_url(org_a), raw, content_type, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code in {400, 415}, response.content
    assert response.json()["error"]["message"]
    assert ledger_rows() == before


def test_an_unknown_organization_is_a_404(staff_api, db):
    assert_error(grant(staff_api, 999_999), 404, param="organization_id")
    assert Grant.objects.count() == 0


def test_form_posts_work_for_the_browsable_api(staff_api, org_a):
    response = staff_api.post(grants_url(org_a), {"kind": "paid", "amount": "3.25", "idempotency_key": "form"})
    assert response.status_code == 201
    assert response.json()["balance"]["available"] == "3.25"


# --- balance, grants, journal ------------------------------------------------------------------------------------


def test_the_balance_shows_available_held_overdraft_and_expiring_credit(staff_api, org_a):
    grant(staff_api, org_a, key="a", amount="20")
    grant(
        staff_api,
        org_a,
        key="b",
        kind="promotional",
        amount="5",
        expires_at=(timezone.now() + timedelta(days=3)).isoformat(),
    )
    wallet = services.wallet_get_or_create(organization_id=org_a.pk)
    services.hold_place(wallet_id=wallet.pk, amount_nano=parse_amount("1.5"), idempotency_key="h", actor="t")
    body = staff_api.get(f"/api/staff/organizations/{org_a.pk}/balance/").json()
    assert (body["available"], body["held"], body["expiring_soon"], body["spendable"]) == (
        "23.50",
        "1.50",
        "5.00",
        "23.50",
    )
    assert (body["organization_id"], body["currency"], body["expiring_within_days"]) == (org_a.pk, "USD", 30)
    assert body["next_expiry_at"] is not None


def test_an_organization_without_a_wallet_has_a_zero_balance_and_empty_lists(staff_api, org_a):
    base = f"/api/staff/organizations/{org_a.pk}"
    assert staff_api.get(f"{base}/balance/").json()["available_nano"] == 0
    assert staff_api.get(f"{base}/grants/").json()["results"] == []
    assert staff_api.get(f"{base}/journal/").json()["results"] == []
    assert Wallet.objects.count() == 0  # reading never creates a wallet


def test_grants_are_listed_newest_first_and_paginated(staff_api, org_a):
    for index in range(3):
        grant(staff_api, org_a, key=f"g{index}", amount=f"{index + 1}")
    page = staff_api.get(f"/api/staff/organizations/{org_a.pk}/grants/?limit=2").json()
    assert page["count"] == 3
    assert [g["amount"] for g in page["results"]] == ["3.00", "2.00"]
    rest = staff_api.get(page["next"]).json()
    assert [g["amount"] for g in rest["results"]] == ["1.00"]


def test_the_journal_shows_entries_and_grant_draws(staff_api, org_a):
    grant(staff_api, org_a, key="a", amount="10")
    wallet = services.wallet_get_or_create(organization_id=org_a.pk)
    hold = services.hold_place(wallet_id=wallet.pk, amount_nano=parse_amount("2"), idempotency_key="h", actor="t")
    services.hold_capture(hold_id=hold.hold_id, amount_nano=parse_amount("1.25"), actor="t")
    body = staff_api.get(f"/api/staff/organizations/{org_a.pk}/journal/").json()
    kinds = [txn["kind"] for txn in body["results"]]
    assert kinds == ["capture", "hold", "grant"]
    capture = body["results"][0]
    assert sum(entry["amount_nano"] for entry in capture["entries"]) == 0
    assert {(e["account"], e["amount"]) for e in capture["entries"]} >= {("spent", "1.25")}
    granted = Grant.objects.get()
    assert capture["draws"] == [{"grant_id": granted.pk, "amount": "1.25", "amount_nano": 1_250_000_000}]


def test_the_journal_is_cursor_paginated_with_a_constant_number_of_queries(
    staff_api, org_a, django_assert_max_num_queries
):
    for index in range(30):
        grant(staff_api, org_a, key=f"g{index}", amount="1")
    url = f"/api/staff/organizations/{org_a.pk}/journal/?limit=10"
    with django_assert_max_num_queries(8):
        page = staff_api.get(url).json()
    assert len(page["results"]) == 10
    seen = [txn["id"] for txn in page["results"]]
    while page["next"]:
        page = staff_api.get(page["next"]).json()
        seen += [txn["id"] for txn in page["results"]]
    assert len(seen) == len(set(seen)) == 30
    assert seen == sorted(seen, reverse=True)


def test_a_bad_cursor_is_a_4xx(staff_api, org_a):
    response = staff_api.get(f"/api/staff/organizations/{org_a.pk}/journal/?cursor=garbage")
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["message"]


# --- reversals ---------------------------------------------------------------------------------------------------


def reversal_url(org: Organization, grant_id: int) -> str:
    return f"/api/staff/organizations/{org.pk}/grants/{grant_id}/reversals/"


def reverse(api: APIClient, org: Organization, grant_id: int, key: str = "r-1", **body: Any) -> Any:
    payload = {"amount": "2.50", "reason": "granted by mistake", **body}
    return api.post(reversal_url(org, grant_id), payload, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_unused_credit_of_a_grant_is_reversed_once(staff_api, org_a):
    grant_id = grant(staff_api, org_a, amount="10").json()["grant"]["id"]
    first = reverse(staff_api, org_a, grant_id)
    again = reverse(staff_api, org_a, grant_id)
    assert (first.status_code, again.status_code) == (201, 200)
    body = first.json()
    assert body["transaction"]["kind"] == "adjustment"
    assert body["transaction"]["reason"] == "granted by mistake"
    assert body["grant"]["remaining"] == "7.50"
    assert body["balance"]["available"] == "7.50"
    assert again.json()["transaction"]["id"] == body["transaction"]["id"]
    assert selectors.wallet_balance(organization_id=org_a.pk).available_nano == parse_amount("7.50")


def test_more_than_the_unused_credit_cannot_be_reversed(staff_api, org_a):
    grant_id = grant(staff_api, org_a, amount="1").json()["grant"]["id"]
    before = ledger_rows()
    error = assert_error(reverse(staff_api, org_a, grant_id, amount="1.01"), 400, param="amount")
    assert "1.00" in error["message"]
    assert ledger_rows() == before


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"amount": "-1"}, "amount"),
        ({"amount": 1.5}, "amount"),
        ({"amount": "1.0000000001"}, "amount"),
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
    ],
)
def test_bad_reversal_input_is_a_400(staff_api, org_a, body, param):
    grant_id = grant(staff_api, org_a, amount="10").json()["grant"]["id"]
    before = ledger_rows()
    assert_error(reverse(staff_api, org_a, grant_id, **body), 400, param=param)
    assert ledger_rows() == before


def test_a_reversal_key_reused_for_another_amount_is_a_conflict(staff_api, org_a):
    grant_id = grant(staff_api, org_a, amount="10").json()["grant"]["id"]
    reverse(staff_api, org_a, grant_id, key="same")
    before = ledger_rows()
    assert_error(reverse(staff_api, org_a, grant_id, key="same", amount="1"), 409, param="idempotency_key")
    assert ledger_rows() == before


def test_another_organizations_grant_is_a_404_like_an_unknown_one(staff_api, org_a, org_b):
    other = grant(staff_api, org_b, key="b", amount="10").json()["grant"]["id"]
    before = ledger_rows()
    unknown = assert_error(reverse(staff_api, org_a, 999_999), 404, param="grant_id")
    foreign = assert_error(reverse(staff_api, org_a, other), 404, param="grant_id")
    assert unknown["message"].replace("999999", "N") == foreign["message"].replace(str(other), "N")
    assert ledger_rows() == before


# --- overdraft ---------------------------------------------------------------------------------------------------


def test_the_overdraft_limit_is_set_and_audited(staff_api, org_a):
    url = f"/api/staff/organizations/{org_a.pk}/overdraft/"
    body = staff_api.put(url, {"overdraft_limit": "50.00", "reason": "enterprise terms"}, format="json").json()
    assert (body["overdraft_limit"], body["spendable"]) == ("50.00", "50.00")
    event = org_a.audit_events.get(action="wallet.overdraft_set")
    assert (event.actor_label, event.reason) == ("dana@operator.example", "enterprise terms")
    assert staff_api.put(url, {"overdraft_limit": "0"}, format="json").json()["overdraft_limit_nano"] == 0


@pytest.mark.parametrize("limit", ["-5", 5.5, "abc", None, "1000000000.01"])
def test_bad_overdraft_limits_are_refused(staff_api, org_a, limit):
    url = f"/api/staff/organizations/{org_a.pk}/overdraft/"
    assert_error(staff_api.put(url, {"overdraft_limit": limit}, format="json"), 400, param="overdraft_limit")
    assert Wallet.objects.count() == 0


def test_the_overdraft_cannot_drop_below_what_is_owed(staff_api, org_a):
    url = f"/api/staff/organizations/{org_a.pk}/overdraft/"
    staff_api.put(url, {"overdraft_limit": "10"}, format="json")
    services.wallet_debit(organization_id=org_a.pk, amount_nano=parse_amount("4"), idempotency_key="d", actor="t")
    assert_error(staff_api.put(url, {"overdraft_limit": "3"}, format="json"), 400, param="overdraft_limit")
    assert selectors.wallet_balance(organization_id=org_a.pk).overdraft_limit_nano == parse_amount("10")


def test_only_put_sets_the_overdraft(staff_api, org_a):
    response = staff_api.post(f"/api/staff/organizations/{org_a.pk}/overdraft/", {"overdraft_limit": "1"})
    assert_error(response, 405)


# --- who may call ------------------------------------------------------------------------------------------------

ENDPOINTS = [
    ("get", "/api/staff/organizations/"),
    ("post", "/api/staff/organizations/"),
    ("get", "/api/staff/organizations/{org}/"),
    ("get", "/api/staff/organizations/{org}/balance/"),
    ("post", "/api/staff/organizations/{org}/credit-grants/"),
    ("get", "/api/staff/organizations/{org}/grants/"),
    ("post", "/api/staff/organizations/{org}/grants/1/reversals/"),
    ("put", "/api/staff/organizations/{org}/overdraft/"),
    ("get", "/api/staff/organizations/{org}/journal/"),
]


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_anonymous_callers_get_401(org_a, method, url):
    response = getattr(APIClient(), method)(url.format(org=org_a.pk), {}, format="json")
    error = assert_error(response, 401)
    assert error["type"] == "authentication_error"
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_customers_get_403_even_for_their_own_organization(alice, org_a, method, url):
    client = APIClient()
    client.force_login(alice)
    before = ledger_rows()
    response = getattr(client, method)(url.format(org=org_a.pk), {"kind": "paid", "amount": "1"}, format="json")
    assert assert_error(response, 403)["type"] == "permission_error"
    assert ledger_rows() == before


def test_a_wrong_token_is_401(org_a):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert_error(client.get(f"/api/staff/organizations/{org_a.pk}/balance/"), 401)


def test_staff_in_a_browser_use_the_session_and_need_the_csrf_token(staff, org_a):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get(f"/api/staff/organizations/{org_a.pk}/balance/").status_code == 200
    response = client.post(grants_url(org_a), {"kind": "paid", "amount": "1"}, format="json", HTTP_IDEMPOTENCY_KEY="c")
    assert_error(response, 403)
    assert Grant.objects.count() == 0


def test_organizations_are_created_listed_and_read(staff_api):
    created = staff_api.post("/api/staff/organizations/", {"name": "  Initech  "}, format="json")
    assert created.status_code == 201
    organization = created.json()
    assert (organization["name"], organization["currency"]) == ("Initech", "USD")
    OrganizationFactory(name="Globex")
    listing = staff_api.get("/api/staff/organizations/?search=init").json()
    assert [o["id"] for o in listing["results"]] == [organization["id"]]
    assert staff_api.get(f"/api/staff/organizations/{organization['id']}/").json() == organization


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "   "}, {"name": 5}, {"name": "x" * 201}, {"name": None}])
def test_bad_organization_names_are_refused(staff_api, body):
    assert_error(staff_api.post("/api/staff/organizations/", body, format="json"), 400, param="name")
    assert Organization.objects.count() == 0


def test_an_unknown_organization_reads_as_404(staff_api, db):
    for path in ("", "balance/", "grants/", "journal/"):
        assert_error(staff_api.get(f"/api/staff/organizations/424242/{path}"), 404)


def test_numbers_are_not_names_or_reasons(staff_api, org_a):
    assert_error(grant(staff_api, org_a, reason=5), 400, param="reason")


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_grant_grant_once(staff, org_a):
    """Eight clients send the same grant at the same moment, each on its own database connection."""
    token = staff_token_for(staff)
    start = Barrier(8)

    def send(_: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            start.wait()
            return grant(client, org_a, key="same-moment", amount="7.00").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [200] * 7 + [201]
    assert Grant.objects.count() == 1
    assert selectors.wallet_balance(organization_id=org_a.pk).available_nano == parse_amount("7.00")


@pytest.mark.django_db(transaction=True)
def test_concurrent_replays_of_one_reversal_reverse_once_and_one_answers_201(staff, org_a):
    """Eight clients send the same reversal at the same moment: one books it (201), the others get it back (200)."""
    token = staff_token_for(staff)
    admin = APIClient()
    admin.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    grant_id = grant(admin, org_a, amount="10").json()["grant"]["id"]
    start = Barrier(8)

    def send(_: int) -> int:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
        try:
            start.wait()
            return reverse(client, org_a, grant_id, key="same-moment").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(send, range(8)))
    assert statuses == [200] * 7 + [201]
    assert selectors.wallet_balance(organization_id=org_a.pk).available_nano == parse_amount("7.50")
    assert selectors.wallet_reconcile(wallet_id=Grant.objects.get(pk=grant_id).wallet_id) == []
