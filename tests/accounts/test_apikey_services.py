from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey, Role
from accounts.services import (
    apikey_create,
    apikey_revoke,
    apikey_rotate,
    apikey_update,
    membership_add,
    organization_create,
)
from core.errors import ApplicationError


def test_organization_create_with_owner(db, django_user_model):
    owner = django_user_model.objects.create_user("owner@example.com")
    org = organization_create(name="  Acme  ", owner=owner)
    assert org.name == "Acme"
    assert org.memberships.get().role == Role.OWNER


@pytest.mark.parametrize("name", ["", "   ", "x" * 201, 12])
def test_organization_create_rejects_bad_names(db, name):
    with pytest.raises(ApplicationError):
        organization_create(name=name)


def test_membership_add_twice_is_an_error(org_a, alice):
    with pytest.raises(ApplicationError, match="already a member"):
        membership_add(organization_id=org_a.pk, user=alice, role=Role.VIEWER)


def test_membership_add_bad_role_and_unknown_org(org_a, charlie):
    with pytest.raises(ApplicationError, match="role must be"):
        membership_add(organization_id=org_a.pk, user=charlie, role="admin")
    with pytest.raises(ApplicationError, match="not found"):
        membership_add(organization_id=999_999, user=charlie, role=Role.VIEWER)


def test_apikey_create_stores_only_the_hash(org_a, alice):
    key, secret = apikey_create(
        organization_id=org_a.pk,
        name="ci",
        created_by=alice,
        workflow="nightly-evals",
        scopes={"endpoints": ["chat", "chat", "balance"], "models": ["gpt-4o-mini"]},
    )
    key.refresh_from_db()
    assert key.secret_hash == keyformat.secret_hash(secret)
    assert secret not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert key.scope_endpoints == ["balance", "chat"] and key.scope_models == ["gpt-4o-mini"]
    assert key.created_by == alice


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": ""}, "name must not be empty"),
        ({"scopes": {"endpoints": ["admin"]}}, "unknown endpoint"),
        ({"scopes": {"endpoints": "chat"}}, "list of strings"),
        ({"scopes": {"colour": []}}, "scopes must be an object"),
        ({"scopes": {"models": ["bad model"]}}, "not a model id"),
        ({"workflow": "has space"}, "workflow must be"),
        ({"expires_at": timezone.now() - timedelta(seconds=1)}, "in the future"),
    ],
)
def test_apikey_create_rejects_bad_input_and_writes_nothing(org_a, kwargs, message):
    with pytest.raises(ApplicationError, match=message):
        apikey_create(**{"organization_id": org_a.pk, "name": "k", **kwargs})
    assert not ApiKey.objects.exists()


def test_apikey_create_unknown_org(db):
    with pytest.raises(ApplicationError, match="organization not found"):
        apikey_create(organization_id=123456, name="k")


def test_apikey_revoke_is_idempotent(org_a, alice):
    key, _ = apikey_create(organization_id=org_a.pk, name="k")
    first = apikey_revoke(api_key_id=key.pk, actor=alice).revoked_at
    assert first is not None
    assert apikey_revoke(api_key_id=key.pk, actor=None).revoked_at == first


def test_apikey_rotate_copies_settings_and_shortens_the_old_key(org_a, alice):
    old, _ = apikey_create(
        organization_id=org_a.pk,
        name="k",
        scopes={"endpoints": ["chat"]},
    )
    new, secret = apikey_rotate(api_key_id=old.pk, actor=alice, overlap=timedelta(hours=1))
    old.refresh_from_db()
    assert old.replaced_by == new and old.rotated_at is not None
    assert timedelta(minutes=59) < old.expires_at - timezone.now() <= timedelta(hours=1)
    # (Its spend limits are budgets of the key: they follow it, tests/billing/metering/test_key_limits.py.)
    assert new.scope_endpoints == ["chat"]
    assert keyformat.secret_key_id(secret) == new.key_id
    with pytest.raises(ApplicationError, match="already rotated"):
        apikey_rotate(api_key_id=old.pk, actor=alice)


def test_apikey_rotate_rejects_bad_overlap_and_revoked_keys(org_a):
    key, _ = apikey_create(organization_id=org_a.pk, name="k")
    with pytest.raises(ApplicationError, match="overlap"):
        apikey_rotate(api_key_id=key.pk, actor=None, overlap=timedelta(days=31))
    apikey_revoke(api_key_id=key.pk, actor=None)
    with pytest.raises(ApplicationError, match="revoked"):
        apikey_rotate(api_key_id=key.pk, actor=None)
    with pytest.raises(ApplicationError, match="not found"):
        apikey_rotate(api_key_id=987654, actor=None)


def test_apikey_update_changes_only_what_is_given(org_a):
    key, _ = apikey_create(organization_id=org_a.pk, name="k", workflow="wf", requests_per_minute=10)
    apikey_update(api_key_id=key.pk, actor=None, name="renamed")
    key.refresh_from_db()
    assert (key.name, key.workflow, key.requests_per_minute) == ("renamed", "wf", 10)
    apikey_update(api_key_id=key.pk, actor=None, requests_per_minute=None)
    key.refresh_from_db()
    assert (key.name, key.requests_per_minute) == ("renamed", None)
    with pytest.raises(ApplicationError, match="requests_per_minute must be"):
        apikey_update(api_key_id=key.pk, actor=None, requests_per_minute=0)
    key.refresh_from_db()
    assert key.requests_per_minute is None


def test_every_key_change_is_audited(org_a, alice):
    from accounts.models import AuditEvent

    key, first_secret = apikey_create(organization_id=org_a.pk, name="ci", created_by=alice)
    apikey_update(api_key_id=key.pk, actor=alice, name="ci nightly")
    new, second_secret = apikey_rotate(api_key_id=key.pk, actor=alice)
    apikey_revoke(api_key_id=new.pk, actor=alice)
    events = AuditEvent.objects.filter(organization=org_a).order_by("id")
    assert [(e.action, e.target, e.actor) for e in events] == [
        ("apikey.create", f"ApiKey:{key.pk}", alice),
        ("apikey.update", f"ApiKey:{key.pk}", alice),
        ("apikey.rotate", f"ApiKey:{key.pk}", alice),
        ("apikey.revoke", f"ApiKey:{new.pk}", alice),
    ]
    logged = str(list(events.values()))
    assert first_secret not in logged and second_secret not in logged
