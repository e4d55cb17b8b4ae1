"""Buying a commitment with an Idempotency-Key: a retry returns the first purchase and charges once; the key with
a different request is refused with a 409 that says what to do."""

import json
import threading
from datetime import timedelta

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from billing.ledger.models import JournalTransaction
from billing.pricing import services
from billing.pricing.models import Commitment
from tests.accounts.factories import OrganizationFactory, UserFactory
from tests.billing.pricing.conftest import available, fund, usd

URL = "/api/staff/commitments/"


def _setup():
    services.price_book_seed()
    staff = UserFactory(username="sam@staff.example.com", is_staff=True)
    offer = services.commitment_offer_create(
        name="gpt-4o 100M",
        model="gpt-4o",
        committed_tokens_per_month=100_000_000,
        term_months=3,
        discount_bps=2_000,
        payment="upfront",
        blended_price_micro_per_mtok=4_375_000,
    )  # $350.00 a month, $1,050.00 upfront
    return staff, offer


def _buy(client, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(URL, json.dumps(body), content_type="application/json", **headers)


def _debits(org) -> int:
    return JournalTransaction.objects.filter(wallet__organization=org, idempotency_key__startswith="debit:").count()


@pytest.mark.django_db
def test_a_replay_returns_the_first_purchase_and_charges_once(client, org_a, org_b):
    staff, offer = _setup()
    client.force_login(staff)
    fund(org_a, "5000.00")
    body = {"organization": org_a.pk, "offer": offer.pk}
    first = _buy(client, body, "buy-1")
    assert first.status_code == 201, first.json()
    again = _buy(client, body, "buy-1")
    assert again.status_code == 200, again.json()
    assert again.json() == first.json()
    assert Commitment.objects.filter(organization=org_a).count() == 1
    assert _debits(org_a) == 1
    assert available(org_a) == usd("5000.00") - usd("1050.00")
    # The key in the body works the same way.
    assert _buy(client, body | {"idempotency_key": "buy-1"}).json()["id"] == first.json()["id"]
    # The same key for a different purchase: refused, nothing bought.
    for other in (
        {"organization": org_b.pk, "offer": offer.pk},
        body | {"starts_at": (timezone.now() + timedelta(days=1)).isoformat()},
    ):
        refused = _buy(client, other, "buy-1")
        assert refused.status_code == 409, refused.json()
        assert refused.json()["error"]["code"] == "idempotency_conflict"
        assert "use a new key" in refused.json()["error"]["message"]
    assert Commitment.objects.count() == 1
    assert available(org_a) == usd("5000.00") - usd("1050.00")
    # Without a key, each request is a purchase; a new key is a new purchase.
    assert _buy(client, body).status_code == 201
    assert _buy(client, body, "buy-2").status_code == 201
    assert _debits(org_a) == 3
    # The header and the body naming different keys is a mistake, not a guess.
    assert _buy(client, body | {"idempotency_key": "buy-3"}, "buy-4").status_code == 400


@pytest.mark.django_db
def test_a_replay_after_the_offer_is_withdrawn_still_returns_the_purchase(client, org_a):
    staff, offer = _setup()
    client.force_login(staff)
    fund(org_a, "5000.00")
    body = {"organization": org_a.pk, "offer": offer.pk}
    first = _buy(client, body, "buy-1")
    services.commitment_offer_update(offer_id=offer.pk, is_active=False)
    again = _buy(client, body, "buy-1")
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])


@pytest.mark.django_db(transaction=True)
def test_two_requests_with_one_key_at_once_buy_once(org_a):
    staff, offer = _setup()
    fund(org_a, "5000.00")
    body = {"organization": org_a.pk, "offer": offer.pk}
    barrier = threading.Barrier(2)
    responses = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            client = Client()
            client.force_login(staff)
            barrier.wait()
            responses.append(_buy(client, body, "buy-at-once"))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(r.status_code for r in responses) == [200, 201]
    assert len({r.json()["id"] for r in responses}) == 1
    assert Commitment.objects.filter(organization=org_a).count() == 1
    assert available(org_a) == usd("5000.00") - usd("1050.00")


@pytest.fixture
def org_b(db):
    return OrganizationFactory(name="Org B")
