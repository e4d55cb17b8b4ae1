"""GET /v1/balance over real HTTP, authenticated by an API key."""

from datetime import timedelta

import httpx
import pytest
from django.utils import timezone

from accounts.services import apikey_create, apikey_revoke
from billing.ledger import services
from core.money import parse_amount


@pytest.fixture
def secret(org_a) -> str:
    return apikey_create(organization_id=org_a.pk, name="script")[1]


def get(live_url: str, secret: str | None, **headers: str) -> httpx.Response:
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    return httpx.get(f"{live_url}/v1/balance", headers=headers)


def test_balance_reports_available_held_and_expiring_credit(live_url, org_a, secret):
    services.grant_create(
        organization_id=org_a.pk, kind="paid", amount_nano=parse_amount("20"), idempotency_key="a", actor="t"
    )
    soon = timezone.now() + timedelta(days=3)
    services.grant_create(
        organization_id=org_a.pk,
        kind="promotional",
        amount_nano=parse_amount("5"),
        idempotency_key="b",
        actor="t",
        expires_at=soon,
    )
    wallet = services.wallet_get_or_create(organization_id=org_a.pk)
    services.hold_place(wallet_id=wallet.pk, amount_nano=parse_amount("1.5"), idempotency_key="h", actor="t")
    body = get(live_url, secret).json()
    assert body["object"] == "balance"
    assert (body["currency"], body["available"], body["held"]) == ("USD", "23.50", "1.50")
    assert body["available_nano"] == 23_500_000_000
    assert body["expiring_soon"]["amount"] == "5.00"
    assert body["expiring_soon"]["next_expiry_at"].startswith(soon.date().isoformat())


def test_an_organization_without_credit_has_a_zero_balance(live_url, secret):
    body = get(live_url, secret).json()
    assert (body["available"], body["held"], body["expiring_soon"]["amount"]) == ("0.00", "0.00", "0.00")


@pytest.mark.parametrize(
    "header",
    [None, "sk-tb-nope", "Basic abc", "Bearer", "Bearer sk-tb-000000000000000000000000000000000000000000"],
)
def test_missing_or_wrong_keys_get_401_in_openai_shape(live_url, header):
    headers = {} if header is None else {"Authorization": header}
    response = httpx.get(f"{live_url}/v1/balance", headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] in {"missing_api_key", "invalid_api_key"}


def test_a_revoked_key_stops_working(live_url, org_a):
    key, secret = apikey_create(organization_id=org_a.pk, name="soon revoked")
    assert get(live_url, secret).status_code == 200
    apikey_revoke(api_key_id=key.pk, actor=None)
    assert get(live_url, secret).status_code == 401


def test_a_key_scoped_to_other_endpoints_gets_403(live_url, org_a):
    _, secret = apikey_create(organization_id=org_a.pk, name="chat only", scopes={"endpoints": ["chat"]})
    response = get(live_url, secret)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "endpoint_not_allowed"


def test_only_get_is_allowed(live_url, secret):
    response = httpx.post(f"{live_url}/v1/balance", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
