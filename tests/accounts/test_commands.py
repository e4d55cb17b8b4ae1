"""The operator commands: org_create, credit_grant, apikey_create, staff_token (docs/operations.md)."""

import json
import os
import subprocess
import sys
from io import StringIO
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import ApiKey, Organization
from accounts.selectors.stafftokens import staff_token_authenticate
from billing.ledger import selectors
from billing.ledger.models import Grant
from billing.metering.callers import apikey_authenticate
from tests.accounts.factories import UserFactory


def run(*args: str) -> dict[str, Any]:
    out = StringIO()
    call_command(*args, "--json", stdout=out)
    return json.loads(out.getvalue())


def test_org_create_prints_the_organization_id(db):
    result = run("org_create", "--name", "Acme Inc")
    assert Organization.objects.get(pk=result["organization_id"]).name == "Acme Inc"


def test_credit_grant_prints_the_new_balance_and_replays_safely(org_a):
    args = ("credit_grant", "--org", str(org_a.pk), "--amount", "12.50", "--idempotency-key", "ticket-7")
    first = run(*args)
    again = run(*args)
    assert (first["balance"], first["balance_nano"], first["created"]) == ("12.50", 12_500_000_000, True)
    assert (again["balance"], again["created"], again["grant_id"]) == ("12.50", False, first["grant_id"])
    assert selectors.wallet_balance(organization_id=org_a.pk).available_nano == 12_500_000_000


def test_credit_grant_takes_kind_expiry_and_reason(org_a):
    result = run(
        "credit_grant",
        *("--org", str(org_a.pk), "--amount", "5", "--kind", "promotional", "--expires", "2999-01-31"),
        *("--reason", "conference", "--actor", "ops@example.com"),
    )
    grant = Grant.objects.select_related("transaction").get(pk=result["grant_id"])
    assert (grant.kind, grant.expires_at.isoformat()) == ("promotional", "2999-01-31T00:00:00+00:00")
    assert (grant.transaction.reason, grant.transaction.actor) == ("conference", "ops@example.com")
    assert result["expires_at"] == "2999-01-31T00:00:00+00:00"


def test_credit_grant_without_a_key_grants_on_every_run(org_a):
    run("credit_grant", "--org", str(org_a.pk), "--amount", "1")
    assert run("credit_grant", "--org", str(org_a.pk), "--amount", "1")["balance"] == "2.00"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--amount", "-1"), "--amount: amount must be greater than zero"),
        (("--amount", "0"), "greater than zero"),
        (("--amount", "1.0000000001"), "more than 9 decimal places"),
        (("--amount", "1000000000000"), "larger than"),
        (("--amount", "1e3"), "is not a decimal amount"),
        (("--amount", "ten"), "is not a decimal amount"),
        (("--amount", "1", "--expires", "someday"), "--expires"),
        (("--amount", "1", "--expires", "2001-01-01"), "in the future"),
    ],
)
def test_credit_grant_refuses_bad_values_with_a_message(org_a, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        call_command("credit_grant", "--org", str(org_a.pk), *args)
    assert Grant.objects.count() == 0


def test_credit_grant_reports_an_idempotency_conflict(org_a):
    run("credit_grant", "--org", str(org_a.pk), "--amount", "1", "--idempotency-key", "k")
    with pytest.raises(CommandError, match=r"already used for a different grant.*--idempotency-key"):
        call_command("credit_grant", "--org", str(org_a.pk), "--amount", "2", "--idempotency-key", "k")


def test_apikey_create_prints_a_key_that_works(org_a):
    result = run("apikey_create", "--org", str(org_a.pk), "--name", "ci")
    key = apikey_authenticate(secret=result["api_key"])
    assert key is not None and key.organization_id == org_a.pk
    assert ApiKey.objects.get(pk=result["api_key_id"]).name == "ci"


def test_text_output_is_a_sentence(org_a):
    out = StringIO()
    call_command("credit_grant", "--org", str(org_a.pk), "--amount", "3", stdout=out)
    assert out.getvalue().startswith(f"Granted 3.00 USD (paid) to organization {org_a.pk}. Balance: 3.00 USD.")


def test_staff_token_is_issued_to_staff_only_once_and_can_rotate_and_revoke(db):
    staff = UserFactory(username="ops@example.com", is_staff=True)
    UserFactory(username="customer@example.com")
    first = run("staff_token", "--email", "ops@example.com")
    assert staff_token_authenticate(secret=first["token"]).user == staff
    # Shown once: asking again does not print it (only its hash is kept), it says what to do instead.
    with pytest.raises(CommandError, match=r"already has a staff token.*cannot be shown again.*--rotate"):
        call_command("staff_token", "--email", "ops@example.com")
    rotated = run("staff_token", "--email", "OPS@example.com", "--rotate")["token"]
    assert rotated != first["token"] and staff_token_authenticate(secret=first["token"]) is None
    assert staff_token_authenticate(secret=rotated).user == staff
    assert run("staff_token", "--email", "ops@example.com", "--revoke")["revoked"].startswith("st-tb-")
    assert staff_token_authenticate(secret=rotated) is None
    with pytest.raises(CommandError, match="has no staff token in force"):
        call_command("staff_token", "--email", "ops@example.com", "--revoke")
    with pytest.raises(CommandError, match="not an active staff member"):
        call_command("staff_token", "--email", "customer@example.com")
    with pytest.raises(CommandError, match="no user"):
        call_command("staff_token", "--email", "nobody@example.com")


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as an operator runs it: its own process, against the test database."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DEBUG": "true",
        # The host may be a Unix socket's folder (the embedded PostgreSQL of `make test`): percent-encoded.
        "DATABASE_URL": f"postgres://{db['USER']}@{quote(db['HOST'], safe='')}:{db['PORT']}/{db['NAME']}",
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("credit_grant", "--org", "999999", "--amount", "1"),
        ("credit_grant", "--org", "1", "--amount", "-5"),
        ("credit_grant", "--org", "abc", "--amount", "1"),
        ("credit_grant", "--amount", "1"),
        ("credit_grant", "--org", "1", "--amount", "1", "--kind", "plan_allowance"),
        ("org_create", "--name", "   "),
        ("org_create",),
        ("apikey_create", "--org", "999999", "--name", "x"),
        ("apikey_create", "--org", "1", "--name", ""),
        ("staff_token", "--email", "nobody@example.com"),
    ],
)
def test_bad_arguments_exit_non_zero_with_a_message_and_no_traceback(db, args):
    result = manage(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()
    assert result.stdout == ""


def test_a_real_process_names_the_option_at_fault(db):
    result = manage("org_create", "--name", "   ")
    assert "name must not be empty (--name)" in result.stderr
