"""Query parameters of the staff list endpoints: a value out of range or not a number is a 400 that names the
parameter and says what it takes, never a 500 (`?limit=18446744073709551617` was bigint out of range in the
database) and never quietly replaced by a default."""

import base64

import pytest
from rest_framework.test import APIClient

from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

BEYOND_BIGINT = "18446744073709551617"  # 2^64 + 1
ARABIC_3 = "\u0663"  # Arabic-Indic three: int() reads it as 3
SUPERSCRIPT_2 = "\u00b2"  # str.isdigit() says yes, int() says no


@pytest.fixture
def api(db):
    client = APIClient()
    client.force_authenticate(UserFactory(username="dana@operator.example", is_staff=True))
    return client


def limit_offset_lists(org_id):
    return [
        "/api/staff/organizations/",
        "/api/staff/top-ups/",
        "/api/staff/refunds/",
        f"/api/staff/organizations/{org_id}/grants/",
    ]


BAD_LIMITS = [BEYOND_BIGINT, "9223372036854775807", "501", "0", "-1", "abc", "1.5", ARABIC_3, SUPERSCRIPT_2, " 5"]
BAD_OFFSETS = [BEYOND_BIGINT, "9223372036854775807", "1000000001", "-1", "abc", ARABIC_3, SUPERSCRIPT_2]


@pytest.mark.parametrize("value", BAD_LIMITS)
def test_a_bad_limit_is_a_400_naming_it(api, org_a, value):
    for url in limit_offset_lists(org_a.pk):
        response = api.get(url, {"limit": value})
        assert response.status_code == 400, (url, response.content[:300])
        error = response.json()["error"]
        assert error["param"] == "limit", url
        assert "1 to 500" in error["message"]


@pytest.mark.parametrize("value", BAD_OFFSETS)
def test_a_bad_offset_is_a_400_naming_it(api, org_a, value):
    for url in limit_offset_lists(org_a.pk):
        response = api.get(url, {"offset": value})
        assert response.status_code == 400, (url, response.content[:300])
        error = response.json()["error"]
        assert error["param"] == "offset", url
        assert "0 to 1000000000" in error["message"]


def test_good_limits_and_offsets_page_through_the_list(api):
    for name in ("Acme", "Beta", "Gamma"):
        api.post("/api/staff/organizations/", {"name": name}, format="json")
    first = api.get("/api/staff/organizations/", {"limit": "2"}).json()
    assert first["count"] == 3 and [o["name"] for o in first["results"]] == ["Gamma", "Beta"]
    rest = api.get("/api/staff/organizations/", {"limit": "500", "offset": "2"}).json()
    assert [o["name"] for o in rest["results"]] == ["Acme"]
    assert api.get("/api/staff/organizations/", {"offset": "1000000000"}).json()["results"] == []
    # An empty value is as if it were left out.
    assert len(api.get("/api/staff/organizations/", {"limit": "", "offset": ""}).json()["results"]) == 3


@pytest.mark.parametrize("value", [BEYOND_BIGINT, "501", "0", "abc", ARABIC_3])
def test_a_bad_journal_limit_is_a_400(api, org_a, value):
    response = api.get(f"/api/staff/organizations/{org_a.pk}/journal/", {"limit": value})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["param"] == "limit"


@pytest.mark.parametrize("position", ["abc", BEYOND_BIGINT + "0" * 20, "-1", ARABIC_3])
def test_a_journal_cursor_with_a_position_that_is_not_an_id_is_a_4xx(api, org_a, position):
    cursor = base64.b64encode(f"p={position}".encode()).decode()
    response = api.get(f"/api/staff/organizations/{org_a.pk}/journal/", {"cursor": cursor})
    assert response.status_code == 404, response.content[:300]
    assert response.json()["error"]["message"] == "Invalid cursor"


@pytest.mark.parametrize(
    "url",
    [
        "/api/staff/refunds/?organization_id=" + BEYOND_BIGINT,
        "/api/staff/refunds/?top_up_id=" + BEYOND_BIGINT,
        "/api/staff/top-ups/?organization_id=" + BEYOND_BIGINT,
        "/api/staff/subscriptions/?organization=" + BEYOND_BIGINT,
        "/api/staff/commitments/?organization=" + BEYOND_BIGINT,
        "/api/staff/overrides/?organization=" + BEYOND_BIGINT,
        "/api/staff/pricing/audit/?organization=" + BEYOND_BIGINT,
        "/api/staff/pricing/audit/?limit=" + BEYOND_BIGINT,
    ],
)
def test_id_filters_beyond_bigint_are_a_400(api, url):
    response = api.get(url)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/staff/organizations/{big}/",
        "/api/staff/organizations/{big}/balance/",
        "/api/staff/organizations/{big}/grants/",
        "/api/staff/organizations/{big}/journal/",
        "/api/staff/organizations/1/grants/{big}/reversals/",
        "/api/staff/refunds/{big}/",
        "/api/staff/price-versions/{big}/",
        "/api/staff/tier-schedules/{big}/",
        "/api/staff/subscriptions/{big}/",
        "/api/staff/commitment-offers/{big}/",
        "/api/staff/commitments/{big}/",
        "/api/staff/overrides/{big}/",
        "/api/staff/upstreams/{big}/",
    ],
)
def test_path_ids_beyond_bigint_are_a_404(api, url):
    response = api.get(url.format(big=BEYOND_BIGINT))
    # A reversal is POST only: 405 is as good an answer as 404; what matters is no 500.
    assert response.status_code in (404, 405), response.content[:300]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", "/api/staff/organizations/{big}/credit-grants/"),
        ("post", "/api/staff/organizations/{org}/grants/{big}/reversals/"),
        ("put", "/api/staff/organizations/{big}/overdraft/"),
        ("patch", "/api/staff/price-versions/{big}/"),
        ("post", "/api/staff/price-versions/{big}/cancel/"),
        ("patch", "/api/staff/tier-schedules/{big}/"),
        ("post", "/api/staff/tier-schedules/{big}/cancel/"),
        ("post", "/api/staff/subscriptions/{big}/change/"),
        ("post", "/api/staff/subscriptions/{big}/cancel/"),
        ("patch", "/api/staff/commitment-offers/{big}/"),
        ("patch", "/api/staff/commitments/{big}/"),
        ("patch", "/api/staff/overrides/{big}/"),
        ("post", "/api/staff/overrides/{big}/end/"),
        ("patch", "/api/staff/upstreams/{big}/"),
        ("delete", "/api/staff/upstreams/{big}/"),
    ],
)
def test_writes_to_ids_beyond_bigint_are_a_4xx(api, org_a, method, url):
    body = {"amount": "1.00", "reason": "r", "kind": "paid", "overdraft_limit": "0", "idempotency_key": "k"}
    response = getattr(api, method)(url.format(big=BEYOND_BIGINT, org=org_a.pk), body, format="json")
    assert 400 <= response.status_code < 500, response.content[:300]
