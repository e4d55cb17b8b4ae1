"""Staff REST API tokens: only a hash is stored, the token is shown once, rotation and revocation take effect at
once, tokens of earlier versions are carried over by a migration, and `Token` and `Bearer` both work."""

import hashlib
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import AuditEvent, StaffToken
from accounts.services.stafftokens import staff_token_issue, staff_token_revoke
from tests.accounts.factories import UserFactory

LEGACY_KEY = "f712000f676301591284579b527a18d48e929141"


@pytest.fixture
def dana(db: None) -> User:
    return UserFactory(username="dana@operator.example", is_staff=True)


def api(secret: str, scheme: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {secret}")
    return client


def status(secret: str, scheme: str = "Token") -> int:
    return api(secret, scheme).get("/api/staff/organizations/").status_code


def table_text(table: str) -> str:
    """Every row of a table as text, whatever the columns: where a plain-text token would show."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT t::text FROM {table} AS t")
        return "\n".join(row[0] for row in cursor.fetchall())


def test_only_a_hash_of_the_token_is_stored(dana):
    token, secret = staff_token_issue(user=dana, replace=False, actor=None)
    assert secret.startswith("st-tb-") and token.key_id in secret
    assert token.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in table_text("accounts_stafftoken")
    assert secret not in table_text("accounts_auditevent")
    assert "authtoken_token" not in connection.introspection.table_names()


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "bearer"])
def test_the_token_works_as_token_or_bearer(dana, scheme):
    secret = staff_token_issue(user=dana, replace=False, actor=None)[1]
    assert status(secret, scheme) == 200


def test_over_http_the_token_works_and_a_wrong_one_is_401(live_url):
    staff = UserFactory(username="ops@operator.example", is_staff=True)
    secret = staff_token_issue(user=staff, replace=False, actor=None)[1]
    url = f"{live_url}/api/staff/organizations/"
    assert httpx.get(url, headers={"Authorization": f"Token {secret}"}, timeout=10).status_code == 200
    wrong = httpx.get(url, headers={"Authorization": f"Bearer {secret[:-1]}x"}, timeout=10)
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Token")


def test_rotation_and_revocation_take_effect_at_once_and_are_audited(dana):
    first = staff_token_issue(user=dana, replace=False, actor=None)[1]
    second = staff_token_issue(user=dana, replace=True, actor="cli:ops")[1]
    assert (status(first), status(second)) == (401, 200)
    staff_token_revoke(user=dana, actor="cli:ops")
    assert status(second) == 401
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["staff_token.create", "staff_token.revoke", "staff_token.rotate", "staff_token.revoke"]


def test_a_token_stops_working_when_its_user_is_deactivated_and_is_refused_when_they_are_no_longer_staff(dana):
    secret = staff_token_issue(user=dana, replace=False, actor=None)[1]
    User.objects.filter(pk=dana.pk).update(is_staff=False)
    assert status(secret) == 403
    User.objects.filter(pk=dana.pk).update(is_active=False)
    assert status(secret) == 401


def test_a_malformed_token_is_refused_without_a_database_query(dana, django_assert_num_queries):
    for bad in ("st-tb-short", "sk-tb-" + "a" * 40, "x" * 40, "ü"):
        with django_assert_num_queries(0):
            assert status(bad) == 401


def test_a_header_with_spaces_in_the_token_is_a_401_that_says_so(dana):
    response = APIClient().get("/api/staff/organizations/", HTTP_AUTHORIZATION="Token a b")
    assert response.status_code == 401 and "no spaces" in response.json()["error"]["message"]


def test_last_used_is_noted_at_most_once_a_minute(dana):
    secret = staff_token_issue(user=dana, replace=False, actor=None)[1]
    assert status(secret) == 200
    used = StaffToken.objects.get().last_used_at
    assert used is not None and timezone.now() - used < timedelta(seconds=10)
    assert status(secret) == 200
    assert StaffToken.objects.get().last_used_at == used


def test_one_token_in_force_per_staff_member_in_the_database_too(dana):
    staff_token_issue(user=dana, replace=False, actor=None)
    with pytest.raises(IntegrityError), transaction.atomic():
        StaffToken.objects.create(user=dana, key_id="other", secret_hash="0" * 64)


@pytest.mark.django_db(transaction=True)
def test_tokens_of_earlier_versions_are_hashed_by_the_migration_and_keep_working():
    """Earlier versions kept DRF authtoken's tokens in plain text: the migration keeps only their hashes, drops the
    plain-text table, and the scripts holding them go on working until they rotate."""
    executor = MigrationExecutor(connection)
    executor.migrate([("accounts", "0005_auditevent_changes_target_label_model")])
    staff = User.objects.create_user("legacy@operator.example", "legacy@operator.example", "x", is_staff=True)
    with connection.cursor() as cursor:
        # The table as rest_framework.authtoken's migrations made it.
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp with time zone NOT NULL, "
            "user_id integer NOT NULL UNIQUE REFERENCES auth_user (id))"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES (%s, %s, %s)", [LEGACY_KEY, "2025-01-02T03:04:05Z", staff.pk]
        )
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert "authtoken_token" not in connection.introspection.table_names()
    token = StaffToken.objects.get(user=staff)
    assert token.secret_hash == hashlib.sha256(LEGACY_KEY.encode()).hexdigest()
    assert LEGACY_KEY not in table_text("accounts_stafftoken")
    assert token.created_at.isoformat() == "2025-01-02T03:04:05+00:00"
    assert status(LEGACY_KEY) == 200
    new = staff_token_issue(user=staff, replace=True, actor=None)[1]
    assert (status(LEGACY_KEY), status(new)) == (401, 200)


class TestTheTokenEndpoint:
    """/api/staff/token/: the caller's own token."""

    def test_a_script_rotates_its_token_and_the_old_one_stops_at_once(self, dana):
        old = staff_token_issue(user=dana, replace=False, actor=None)[1]
        response = api(old).post("/api/staff/token/")
        assert response.status_code == 201 and response["Cache-Control"] == "no-store"
        new = response.json()["token"]
        assert new.startswith("st-tb-") and response.json()["key_id"] in new
        assert (status(old), status(new)) == (401, 200)
        assert StaffToken.objects.get(revoked_at__isnull=True).secret_hash == hashlib.sha256(new.encode()).hexdigest()

    def test_a_staff_member_revokes_their_token_from_a_browser_session(self, dana):
        secret = staff_token_issue(user=dana, replace=False, actor=None)[1]
        browser = APIClient()
        browser.force_login(dana)
        response = browser.delete("/api/staff/token/")
        assert response.status_code == 200 and response.json()["revoked"].startswith("st-tb-")
        assert status(secret) == 401
        again = browser.delete("/api/staff/token/")
        assert again.status_code == 404 and again.json()["error"]["message"] == "You have no staff token in force."

    def test_a_script_revokes_its_own_token(self, dana):
        secret = staff_token_issue(user=dana, replace=False, actor=None)[1]
        assert api(secret).delete("/api/staff/token/").status_code == 200
        assert status(secret) == 401

    def test_customers_cannot(self, alice):
        browser = APIClient()
        browser.force_login(alice)
        assert browser.post("/api/staff/token/").status_code == 403
        assert not StaffToken.objects.exists()
