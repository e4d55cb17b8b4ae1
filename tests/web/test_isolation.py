"""Who sees what: anonymous visitors are sent to log in; another organization's objects are 404 on every page and
action (exactly like unknown ids); roles are enforced per accounts/permissions.py."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Invitation, Membership
from accounts.services import apikey_create, invitation_create
from tests.accounts.factories import MembershipFactory
from tests.web.conftest import client_for, record
from web.context import SESSION_KEY

VIEW_PAGES = ["/", "/usage/", "/usage/export.csv", "/keys/", "/members/", "/settings/notifications/"]
PAGES = [*VIEW_PAGES, "/keys/new/"]


@pytest.fixture
def a_objects(org_a, alice, bob):
    """One of each of org A's objects: a key, an invitation, a membership."""
    key = apikey_create(organization_id=org_a.pk, name="a-key")[0]
    invitation = invitation_create(organization_id=org_a.pk, email="x@example.com", role="viewer", actor=alice)
    member = Membership.objects.get(user=bob, organization=org_a)
    return key, invitation, member


def object_actions(key: ApiKey, invitation: Invitation, member: Membership) -> list[tuple[str, str, dict]]:
    return [
        ("get", f"/keys/{key.pk}/", {}),
        ("post", f"/keys/{key.pk}/", {"name": "stolen"}),
        ("get", f"/keys/{key.pk}/rotate/", {}),
        ("post", f"/keys/{key.pk}/rotate/", {"overlap_hours": "1"}),
        ("get", f"/keys/{key.pk}/revoke/", {}),
        ("post", f"/keys/{key.pk}/revoke/", {}),
        ("post", f"/members/{member.pk}/role/", {"role": "owner"}),
        ("get", f"/members/{member.pk}/remove/", {}),
        ("post", f"/members/{member.pk}/remove/", {}),
        ("post", f"/members/invitations/{invitation.pk}/revoke/", {}),
        ("post", f"/members/invitations/{invitation.pk}/resend/", {}),
    ]


@pytest.mark.parametrize("url", [*PAGES, "/organizations/new/"])
def test_anonymous_visitors_are_sent_to_log_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_anonymous_visitors_cannot_act_on_objects(client, a_objects):
    for method, url, data in object_actions(*a_objects):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/"), url
    assert_untouched(*a_objects)


def assert_untouched(key: ApiKey, invitation: Invitation, member: Membership) -> None:
    key.refresh_from_db()
    invitation.refresh_from_db()
    assert key.name == "a-key" and key.revoked_at is None and key.replaced_by is None
    assert invitation.revoked_at is None
    assert Membership.objects.get(pk=member.pk).role == member.role
    assert ApiKey.objects.count() == 1


def test_another_organizations_owner_gets_404_for_every_object_and_action(as_charlie, a_objects):
    for method, url, data in object_actions(*a_objects):
        response = getattr(as_charlie, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert_untouched(*a_objects)
    assert len(mail.outbox) == 0


def test_unknown_ids_answer_exactly_like_another_organizations(as_charlie, a_objects):
    key, invitation, member = a_objects
    theirs = [r for _, r, _ in object_actions(*a_objects)]
    unknown = [url.replace(f"/{key.pk}/", "/999999/").replace(f"/{invitation.pk}/", "/999999/") for url in theirs]
    unknown = [url.replace(f"/{member.pk}/", "/999999/") for url in unknown]
    for (method, _, data), url in zip(object_actions(*a_objects), unknown, strict=True):
        assert getattr(as_charlie, method)(url, data).status_code == 404


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def test_pages_show_only_the_current_organizations_data(as_charlie, a_objects, org_a, book):
    record(org_a, at=timezone.now() - timedelta(hours=1), key=a_objects[0], workflow="a-flow", charge_nano=10**9)
    for url in PAGES:
        page = body(as_charlie.get(url))
        for secretish in ("a-key", "a-flow", "bob@example.com", "x@example.com", "Org A", "$1.00"):
            assert secretish not in page, (url, secretish)


def test_filtering_usage_by_another_organizations_key_is_refused(as_charlie, a_objects):
    for url in ("/usage/", "/usage/export.csv"):
        response = as_charlie.get(url, {"key": a_objects[0].pk})
        assert response.status_code == 400
        assert "Select a valid choice" in response.content.decode()


def test_a_forged_organization_in_the_session_falls_back_to_ones_own(charlie, a_objects, org_b):
    client = Client()
    client.force_login(charlie)
    session = client.session
    session[SESSION_KEY] = a_objects[0].organization_id
    session.save()
    page = client.get("/keys/").content.decode()
    assert "a-key" not in page and "Org B" in page
    assert client.post("/organization/switch/", {"organization_id": a_objects[0].organization_id}).status_code == 404


def test_a_member_of_both_organizations_sees_the_one_chosen(charlie, org_a, a_objects):
    MembershipFactory(user=charlie, organization=org_a, role="viewer")
    client = Client()
    client.force_login(charlie)
    assert "a-key" not in client.get("/keys/").content.decode()  # org B, the first membership
    client.post("/organization/switch/", {"organization_id": org_a.pk})
    assert "a-key" in client.get("/keys/").content.decode()
    # ... and there, charlie is a viewer.
    assert client.post(f"/keys/{a_objects[0].pk}/revoke/").status_code == 403


ROLE_MATRIX = [
    # (url, method, data, roles allowed)
    ("/keys/new/", "get", {}, {"owner", "developer"}),
    ("/members/invite/", "post", {"email": "y@example.com", "role": "viewer"}, {"owner"}),
    ("/settings/notifications/", "post", {"low_balance_threshold": "x"}, {"owner", "billing_admin"}),
]


@pytest.mark.parametrize(("url", "method", "data", "allowed"), ROLE_MATRIX)
def test_roles(org_a, alice, bob, bill, vera, url, method, data, allowed):
    for user, role in ((alice, "owner"), (bob, "developer"), (bill, "billing_admin"), (vera, "viewer")):
        status = getattr(client_for(user), method)(url, data).status_code
        if role in allowed:
            assert status != 403, (role, url)
        else:
            assert status == 403, (role, url)


@pytest.mark.parametrize("client_name", ["as_alice", "as_bob", "as_bill", "as_vera"])
def test_every_role_can_view(request, client_name, book):
    client = request.getfixturevalue(client_name)
    for url in VIEW_PAGES:
        assert client.get(url).status_code == 200, url


def test_an_organization_id_in_other_digits_is_not_an_organization(charlie, org_a):
    MembershipFactory(user=charlie, organization=org_a, role="viewer")
    client = Client()
    client.force_login(charlie)
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in str(org_a.pk))
    for raw in (arabic_indic, "\u00b2", "\uff11"):
        assert client.post("/organization/switch/", {"organization_id": raw}).status_code == 404, raw
    assert client.post("/organization/switch/", {"organization_id": str(org_a.pk)}).status_code == 302
