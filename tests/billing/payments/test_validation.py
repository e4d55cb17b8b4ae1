"""Every billing form and JSON endpoint refuses bad input with a message a person can act on (never a 500), and
writes nothing when it does."""

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent
from billing.payments.models import AutoTopUp, TopUp
from billing.payments.services.common import money_clean
from core.errors import ApplicationError


def post_json(client: Client, path: str, body: object) -> object:
    return client.post(path, body, content_type="application/json")


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("abc", "is not a decimal amount"),
        ("-5", "must be greater than zero"),
        ("0", "must be greater than zero"),
        ("0.00", "must be greater than zero"),
        ("4.99", "must be at least 5.00 USD"),
        ("5000.01", "must be at most 5000.00 USD"),
        ("20.001", "at most 2 decimal places"),
        ("20.000", "at most 2 decimal places"),
        ("1e3", "digits and a decimal point"),
        ("+20", "digits and a decimal point"),
        ("20,00", "is not a decimal amount"),
        ("NaN", "digits and a decimal point"),
        ("Infinity", "digits and a decimal point"),
        ("", "amount is required"),
        ("   ", "amount is required"),
        ("99999999999999999999999", "larger than"),
        (20.5, 'decimal string such as "20.00"'),
        (True, 'decimal string such as "20.00"'),
        (None, 'decimal string such as "20.00"'),
        ([20], 'decimal string such as "20.00"'),
        ({"value": 20}, 'decimal string such as "20.00"'),
    ],
)
def test_top_up_amounts_are_checked(alice_client, amount, message):
    response = post_json(alice_client, "/billing/top-up/start/", {"amount": amount})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert message in error["message"]
    assert error["param"] == "amount"
    assert not TopUp.objects.exists()


def test_a_missing_amount_is_refused(alice_client):
    response = post_json(alice_client, "/billing/top-up/start/", {})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "amount"


def test_whole_numbers_are_accepted_as_amounts():
    assert money_clean(20, param="amount") == 20 * 10**9
    assert money_clean("20", param="amount") == 20 * 10**9
    assert money_clean(" 20.5 ", param="amount") == 20_500_000_000
    with pytest.raises(ApplicationError):
        money_clean(-1, param="amount")


def test_the_bounds_come_from_the_settings(alice_client, settings):
    settings.TOPUP_MIN_AMOUNT_NANO = 50 * 10**9
    response = post_json(alice_client, "/billing/top-up/start/", {"amount": "20.00"})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "amount must be at least 50.00 USD"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'"20.00"', "application/json", 400),
        (b"amount=20", "application/x-www-form-urlencoded", 415),
        (b"[" * 100_000, "application/json", 400),
    ],
)
def test_malformed_bodies_are_refused(alice_client, body, content_type, status):
    response = alice_client.post("/billing/top-up/start/", body, content_type=content_type)
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert not TopUp.objects.exists()


@pytest.mark.parametrize("path", ["/billing/top-up/1/pay/", "/billing/auto-top-up/card/confirm/"])
def test_a_body_nested_too_deeply_is_refused_by_every_json_endpoint_that_reads_one(alice_client, path):
    response = alice_client.post(path, b"[" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]


@pytest.mark.parametrize("top_up_id", ["999999999", "abc", "-1", "99999999999999999999999", "1.5"])
def test_unknown_top_up_ids_are_404(alice_client, top_up_id):
    for path in (f"/billing/top-up/{top_up_id}/pay/", f"/billing/top-up/{top_up_id}/sync/"):
        response = post_json(alice_client, path, {})
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "top-up not found"
    assert alice_client.get(f"/billing/top-up/{top_up_id}/").status_code == 404
    assert alice_client.get(f"/billing/receipts/{top_up_id}/").status_code == 404


@pytest.fixture
def pending_top_up(org_a) -> TopUp:
    # Started with the saved card, which was removed since: nothing to charge.
    return TopUp.objects.create(organization=org_a, kind="manual", status="pending", amount_nano=20 * 10**9)


@pytest.mark.parametrize("body", ["[]", '"x"', "5", "null"])
def test_pay_takes_a_json_object(alice_client, pending_top_up, body):
    response = post_json(alice_client, f"/billing/top-up/{pending_top_up.pk}/pay/", body)
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the body must be a JSON object"
    pending_top_up.refresh_from_db()
    assert pending_top_up.status == "pending"


def test_paying_a_top_up_with_no_card_to_charge_is_refused_and_changes_nothing(alice_client, pending_top_up):
    response = post_json(alice_client, f"/billing/top-up/{pending_top_up.pk}/pay/", {})
    assert response.status_code == 400
    assert response.json()["error"] | {"type": None} == {
        "message": "Enter a card to pay with.",
        "param": "card",
        "code": "no_saved_card",
        "type": None,
    }
    pending_top_up.refresh_from_db()
    assert (pending_top_up.status, pending_top_up.stripe_payment_intent_id) == ("pending", None)


@pytest.mark.parametrize("setup_intent_id", [None, "nope", 5, "seti_unknown"])
def test_saving_an_unknown_card_set_up_is_refused(alice_client, setup_intent_id):
    response = post_json(alice_client, "/billing/auto-top-up/card/confirm/", {"setup_intent_id": setup_intent_id})
    assert response.status_code in (400, 404)
    assert response.json()["error"]["param"] == "setup_intent_id"
    assert not AutoTopUp.objects.filter(stripe_payment_method_id__gt="").exists()


def test_another_organizations_card_set_up_is_unknown(alice_client, org_b):
    AutoTopUp.objects.create(organization=org_b, stripe_setup_intent_id="seti_of_b")
    response = post_json(alice_client, "/billing/auto-top-up/card/confirm/", {"setup_intent_id": "seti_of_b"})
    assert response.status_code == 404


VALID = {"enabled": "on", "threshold": "5.00", "amount": "20.00", "daily_cap": "100.00"}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"threshold": "abc"}, "threshold", "is not a decimal amount"),
        ({"threshold": "-1"}, "threshold", "must be greater than zero"),
        ({"threshold": "1.234"}, "threshold", "at most 2 decimal places"),
        ({"amount": ""}, "amount", "required"),
        ({"amount": "0"}, "amount", "must be greater than zero"),
        ({"amount": "1.00"}, "amount", "must be at least 5.00 USD"),
        ({"amount": "9000"}, "amount", "must be at most 5000.00 USD"),
        ({"daily_cap": "10.00"}, "daily_cap", "at least the amount of one top-up"),
        ({"daily_cap": "1e5"}, "daily_cap", "digits and a decimal point"),
    ],
)
def test_auto_top_up_settings_are_checked(alice_client, changes, field, message):
    response = alice_client.post("/billing/auto-top-up/", {**VALID, **changes})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert any(message in text for text in errors[field]), errors
    assert message in response.content.decode()
    assert not AutoTopUp.objects.filter(enabled=True).exists()
    assert not AuditEvent.objects.filter(action="auto_top_up.update").exists()


def test_auto_top_up_cannot_be_turned_on_without_a_saved_card(alice_client):
    response = alice_client.post("/billing/auto-top-up/", VALID)
    assert response.status_code == 400
    assert "Save a card before turning auto top-up on." in response.content.decode()


def test_settings_can_be_saved_turned_off_without_a_card(alice_client, org_a):
    response = alice_client.post("/billing/auto-top-up/", {**VALID, "enabled": ""})
    assert response.status_code == 302
    config = AutoTopUp.objects.get(organization=org_a)
    assert (config.enabled, config.threshold_nano, config.amount_nano) == (False, 5 * 10**9, 20 * 10**9)
    assert AuditEvent.objects.get(action="auto_top_up.update").organization_id == org_a.pk


# --- ids in URLs, query strings and bodies: ASCII digits only (int() also reads other scripts' digits) ---

# Superscript two, Arabic-Indic three, full-width three, 1 and Arabic-Indic three, double-struck one.
NOT_ASCII_IDS = ["\u00b2", "\u0663", "\uff13", "1\u0663", "\U0001d7d9"]


def _in_script(number: int, zero: str) -> str:
    """`number` written with the digits of another script, `zero` being that script's 0."""
    return "".join(chr(ord(zero) + int(d)) for d in str(number))


@pytest.mark.django_db
# The zeros of Arabic-Indic, full-width, double-struck and Extended Arabic-Indic digits.
@pytest.mark.parametrize("zero", ["\u0660", "\uff10", "\U0001d7d8", "\u06f0"])
def test_page_and_json_ids_in_other_scripts_read_as_unknown(org_a, alice_client, zero):
    # A real receipt: its id written in another script's digits must not find it.
    top_up = TopUp.objects.create(
        organization=org_a,
        kind="manual",
        status="succeeded",
        amount_nano=5 * 10**9,
        stripe_payment_intent_id="pi_receipt",
        grant_id=10**9,
        succeeded_at=timezone.now(),
    )
    assert alice_client.get(f"/billing/receipts/{top_up.pk}/").status_code == 200
    assert alice_client.get(f"/billing/top-up/{top_up.pk}/").status_code == 200
    raw = _in_script(top_up.pk, zero)
    for path in (f"/billing/receipts/{raw}/", f"/billing/top-up/{raw}/", "/billing/receipts/²/", "/billing/top-up/²/"):
        response = alice_client.get(path)
        assert response.status_code == 404, (path, response.status_code)


@pytest.mark.django_db
@pytest.mark.parametrize("raw", NOT_ASCII_IDS)
def test_staff_refund_ids_in_other_scripts_are_refused(db, raw):
    from tests.accounts.factories import UserFactory

    staff = Client()
    staff.force_login(UserFactory(username="sam@example.com", is_staff=True))
    assert staff.get(f"/api/staff/refunds/{raw}/").status_code == 404
    for query in (f"organization_id={raw}", f"top_up_id={raw}"):
        response = staff.get(f"/api/staff/refunds/?{query}")
        assert response.status_code == 400, query
        assert response.json()["error"]["message"].endswith("must be an integer id")
    assert staff.get(f"/api/staff/top-ups/?organization_id={raw}").status_code == 400
    response = staff.post(
        "/api/staff/refunds/",
        {"top_up_id": raw, "reason": "r"},
        content_type="application/json",
        headers={"Idempotency-Key": "k"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "top_up_id"


@pytest.mark.parametrize(
    ("card", "message", "code"),
    [
        ("saved", "There is no saved card any more. Enter a card to pay with.", "no_saved_card"),
        ("other", 'card must be "new" or "saved"', "invalid_card"),
        (None, 'card must be "new" or "saved"', "invalid_card"),
        (["saved"], 'card must be "new" or "saved"', "invalid_card"),
    ],
)
def test_the_card_choice_is_checked(alice_client, card, message, code):
    response = post_json(alice_client, "/billing/top-up/start/", {"amount": "20.00", "card": card})
    assert response.status_code == 400, response.content
    assert response.json()["error"] | {"type": None} == {
        "message": message,
        "param": "card",
        "code": code,
        "type": None,
    }
    assert not TopUp.objects.exists()


def test_a_top_up_with_the_saved_card_takes_no_card_step(alice_client, org_a):
    AutoTopUp.objects.create(organization=org_a, stripe_payment_method_id="pm_saved", card_last4="4242")
    started = post_json(alice_client, "/billing/top-up/start/", {"amount": "20.00", "card": "saved"})
    assert started.status_code == 201, started.content
    assert started.json()["payment_intent_client_secret"] is None
    top_up = TopUp.objects.get()
    assert (top_up.stripe_payment_method_id, top_up.card_last4, top_up.stripe_setup_intent_id) == (
        "pm_saved",
        "4242",
        "",
    )

    response = post_json(alice_client, f"/billing/top-up/{top_up.pk}/pay/", ["saved"])
    assert response.status_code == 400
    top_up.refresh_from_db()
    assert top_up.status == "pending"
