"""/members/ and /invitations/<token>/: invite, accept (existing and new users), resend, revoke, roles, removal."""

import re
import threading
from datetime import timedelta

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.core import mail
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import AuditEvent, Invitation, Membership, Organization, Role
from accounts.services import invitation_create, membership_role_change
from core.errors import ApplicationError
from tests.accounts.factories import MembershipFactory, UserFactory
from tests.web.conftest import client_for
from web.context import SESSION_KEY


def link_in(message) -> str:
    match = re.search(r"https?://\S+/invitations/(\S+)/", message.body)
    assert match, message.body
    return f"/invitations/{match.group(1)}/"


@pytest.fixture
def invite(committing):
    def post(client: Client, email: str, role: str = "developer"):
        return committing(client.post, "/members/invite/", {"email": email, "role": role})

    return post


class TestList:
    def test_everyone_in_the_organization_sees_members_and_invitations(self, as_vera, alice, bob, org_a):
        invitation_create(organization_id=org_a.pk, email="new@example.com", role="viewer", actor=alice)
        page = as_vera.get("/members/").content.decode()
        for text in (
            "alice@example.com",
            "bob@example.com",
            "vera@example.com",
            "new@example.com",
            "Owner",
            "Developer",
        ):
            assert text in page
        # ... but only owners get the controls.
        assert "/members/invite/" not in page
        assert 'name="role"' not in page
        owner_page = client_for(alice).get("/members/").content.decode()
        assert "/members/invite/" in owner_page and 'name="role"' in owner_page

    def test_queries_do_not_grow_with_members_or_invitations(self, as_alice, alice, org_a):
        def queries() -> int:
            with CaptureQueriesContext(connection) as captured:
                assert as_alice.get("/members/").status_code == 200
            return len(captured)

        MembershipFactory(organization=org_a, role=Role.VIEWER)
        invitation_create(organization_id=org_a.pk, email="one@example.com", role="viewer", actor=alice)
        few = queries()
        for n in range(10):
            MembershipFactory(organization=org_a, role=Role.DEVELOPER)
            invitation_create(organization_id=org_a.pk, email=f"more{n}@example.com", role="viewer", actor=alice)
        assert queries() == few


class TestInvite:
    def test_sends_an_email_with_a_link_and_stores_only_a_hash(self, as_alice, org_a, invite):
        response = invite(as_alice, "  New.Person@Example.com ", "billing_admin")
        assert response.status_code == 302
        invitation = Invitation.objects.get()
        assert (invitation.email, invitation.role, invitation.invited_by.username) == (
            "new.person@example.com",
            "billing_admin",
            "alice@example.com",
        )
        assert invitation.expires_at - invitation.sent_at == timedelta(days=7)
        [message] = mail.outbox
        assert message.to == ["new.person@example.com"]
        assert "Org A" in message.subject and "Billing admin" in message.body
        token = link_in(message).split("/")[2]
        assert token not in invitation.token_hash and len(invitation.token_hash) == 64
        event = AuditEvent.objects.get(action="invitation.create")
        assert (event.organization_id, event.detail) == (
            org_a.pk,
            {"email": "new.person@example.com", "role": "billing_admin"},
        )

    @pytest.mark.parametrize(
        ("email", "role", "message"),
        [
            ("", "developer", "This field is required."),
            ("not-an-email", "developer", "Enter a valid email address."),
            ("x@example.com", "admin", "Select a valid choice"),
            ("x@example.com", "", "This field is required."),
            ("bob@example.com", "viewer", "already a member"),
            ("BOB@example.com", "viewer", "already a member"),
        ],
    )
    def test_bad_input_is_refused_with_a_message_and_writes_nothing(self, as_alice, bob, email, role, message, invite):
        response = invite(as_alice, email, role)
        assert response.status_code == 400
        assert message in response.content.decode()
        assert not Invitation.objects.exists()
        assert mail.outbox == []

    def test_a_second_invitation_to_a_pending_address_is_refused(self, as_alice, invite):
        invite(as_alice, "new@example.com")
        response = invite(as_alice, "new@example.com", "viewer")
        assert response.status_code == 400
        assert "already has a pending invitation" in response.content.decode()
        assert Invitation.objects.count() == 1

    def test_an_expired_invitation_makes_way_for_a_new_one(self, as_alice, alice, org_a, invite):
        old = invitation_create(organization_id=org_a.pk, email="new@example.com", role="viewer", actor=alice)
        with time_machine.travel(timezone.now() + timedelta(days=8)):
            assert invite(as_alice, "new@example.com", "developer").status_code == 302
        old.refresh_from_db()
        assert old.revoked_at is not None
        assert Invitation.objects.get(revoked_at__isnull=True).role == "developer"

    def test_only_owners_can_invite(self, as_bob, as_bill, as_vera, invite):
        for client in (as_bob, as_bill, as_vera):
            assert invite(client, "x@example.com").status_code == 403
        assert not Invitation.objects.exists()


@pytest.fixture
def invited(as_alice, invite) -> str:
    """An invitation of dana@example.com (no account yet) to org A as developer; returns the link's path."""
    invite(as_alice, "dana@example.com", "developer")
    return link_in(mail.outbox[-1])


class TestAcceptAsExistingUser:
    def test_log_in_and_accept(self, invited, org_a, charlie):
        dana = UserFactory(username="dana@example.com")
        anonymous = Client()
        page = anonymous.get(invited).content.decode()
        assert "Join Org A" in page and f"/accounts/login/?next={invited}" in page
        client = client_for(dana)
        assert 'data-testid="accept-invitation"' in client.get(invited).content.decode()
        response = client.post(invited)
        assert response.status_code == 302 and response["Location"] == "/"
        membership = Membership.objects.get(user=dana, organization=org_a)
        assert membership.role == Role.DEVELOPER
        assert client.session[SESSION_KEY] == org_a.pk
        invitation = Invitation.objects.get()
        assert invitation.accepted_by == dana and invitation.accepted_at is not None
        assert AuditEvent.objects.filter(action="invitation.accept", organization=org_a).exists()
        # The link is spent.
        assert Client().get(invited).status_code == 410
        assert client.get(invited).status_code == 302  # the member who accepted it is sent to the dashboard

    def test_a_verified_secondary_address_counts(self, invited, org_a):
        dana = UserFactory(username="d@other.example", email="d@other.example")
        EmailAddress.objects.create(user=dana, email="dana@example.com", verified=True)
        assert client_for(dana).post(invited).status_code == 302
        assert Membership.objects.filter(user=dana, organization=org_a).exists()

    def test_someone_logged_in_with_another_address_cannot_accept(self, invited, charlie, org_a):
        client = client_for(charlie)
        assert "Log out, then log in or sign up with dana@example.com" in client.get(invited).content.decode()
        response = client.post(invited)
        assert response.status_code == 400
        assert "this invitation was sent to dana@example.com" in response.content.decode()
        assert not Membership.objects.filter(user=charlie, organization=org_a).exists()
        assert Invitation.objects.get().accepted_at is None

    def test_expired_revoked_and_unknown_links(self, invited, as_alice, org_a):
        dana = UserFactory(username="dana@example.com")
        client = client_for(dana)
        with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
            response = client.post(invited)
            assert response.status_code == 410 and "has expired" in response.content.decode()
        as_alice.post(f"/members/invitations/{Invitation.objects.get().pk}/revoke/")
        response = client.post(invited)
        assert response.status_code == 410 and "was revoked" in response.content.decode()
        assert client.get("/invitations/not-a-token/").status_code == 404
        assert not Membership.objects.filter(user=dana).exists()

    def test_an_existing_member_is_not_invited_nor_can_accept_again(self, as_alice, org_a, bob, invited, invite):
        EmailAddress.objects.create(user=bob, email="bob2@example.com", verified=True)
        response = invite(as_alice, "bob2@example.com", "owner")
        assert response.status_code == 400 and "already a member" in response.content.decode()
        # Dana joined some other way meanwhile.
        dana = UserFactory(username="dana@example.com")
        Membership.objects.create(user=dana, organization=org_a, role=Role.VIEWER)
        response = client_for(dana).post(invited)
        assert response.status_code == 400
        assert "already a member" in response.content.decode()
        assert Membership.objects.get(user=dana, organization=org_a).role == Role.VIEWER


class TestAcceptBySigningUp:
    def test_opening_the_link_then_signing_up_with_that_address_joins_at_once(self, invited, org_a):
        browser = Client()
        assert browser.get(invited).status_code == 200
        page = browser.get("/accounts/signup/?email=dana%40example.com").content.decode()
        assert "you join" in page and "Org A" in page
        response = browser.post(
            "/accounts/signup/",
            {
                "email": "dana@example.com",
                "password1": "a long enough passphrase",
                "password2": "a long enough passphrase",
            },
        )
        assert response.status_code == 302 and response["Location"] == "/"
        dana = User.objects.get(email="dana@example.com")
        assert [(m.organization_id, m.role) for m in dana.memberships.all()] == [(org_a.pk, Role.DEVELOPER)]
        assert Organization.objects.count() == 1  # no organization of her own
        # The link proved the address: verified, logged in, no confirmation email.
        assert EmailAddress.objects.get(user=dana).verified
        assert browser.get("/").status_code == 200
        assert [m.to for m in mail.outbox] == [["dana@example.com"]]  # only the invitation

    def test_signing_up_with_another_address_starts_an_organization_of_ones_own(self, invited, org_a):
        browser = Client()
        browser.get(invited)
        response = browser.post(
            "/accounts/signup/",
            {
                "email": "someone@else.example",
                "password1": "a long enough passphrase",
                "password2": "a long enough passphrase",
                "organization_name": "Else Inc",
            },
        )
        assert response.status_code == 302 and "confirm-email" in response["Location"]
        user = User.objects.get(email="someone@else.example")
        assert [m.organization.name for m in user.memberships.all()] == ["Else Inc"]
        assert [(a.email, a.verified) for a in EmailAddress.objects.filter(user=user)] == [
            ("someone@else.example", False)
        ]
        assert Invitation.objects.get().accepted_at is None


class TestResendAndRevoke:
    def test_resend_issues_a_new_link_and_the_old_one_stops_working(self, as_alice, invited, committing):
        invitation = Invitation.objects.get()
        response = committing(as_alice.post, f"/members/invitations/{invitation.pk}/resend/")
        assert response.status_code == 302
        new_link = link_in(mail.outbox[-1])
        assert new_link != invited
        assert Client().get(invited).status_code == 404
        assert Client().get(new_link).status_code == 200

    def test_revoke(self, as_alice, invited):
        invitation = Invitation.objects.get()
        assert as_alice.post(f"/members/invitations/{invitation.pk}/revoke/").status_code == 302
        invitation.refresh_from_db()
        assert invitation.revoked_at is not None
        assert Client().get(invited).status_code == 410
        assert AuditEvent.objects.filter(action="invitation.revoke").count() == 1
        # Revoked invitations leave the list and cannot be resent.
        assert 'data-invitation="dana@example.com"' not in as_alice.get("/members/").content.decode()
        response = as_alice.post(f"/members/invitations/{invitation.pk}/resend/")
        assert response.status_code == 400 and "only a pending invitation" in response.content.decode()

    def test_resend_and_revoke_say_what_they_did(self, as_alice, invited, committing):
        invitation = Invitation.objects.get()
        response = committing(as_alice.post, f"/members/invitations/{invitation.pk}/resend/", follow=True)
        assert "Sent the invitation to dana@example.com again, with a new link." in response.content.decode()
        response = as_alice.post(f"/members/invitations/{invitation.pk}/revoke/", follow=True)
        assert "Revoked the invitation of dana@example.com; its link no longer works." in response.content.decode()

    def test_only_owners_can_resend_or_revoke(self, as_bob, as_bill, invited):
        invitation = Invitation.objects.get()
        for client in (as_bob, as_bill):
            assert client.post(f"/members/invitations/{invitation.pk}/revoke/").status_code == 403
            assert client.post(f"/members/invitations/{invitation.pk}/resend/").status_code == 403
        invitation.refresh_from_db()
        assert invitation.revoked_at is None and len(mail.outbox) == 1


def member_id(user: User, org: Organization) -> int:
    return Membership.objects.get(user=user, organization=org).pk


class TestRoles:
    def test_an_owner_changes_a_role(self, as_alice, bob, org_a):
        response = as_alice.post(f"/members/{member_id(bob, org_a)}/role/", {"role": "viewer"})
        assert response.status_code == 302
        assert Membership.objects.get(user=bob, organization=org_a).role == Role.VIEWER
        event = AuditEvent.objects.get(action="membership.role_change")
        assert event.detail == {"email": "bob@example.com", "from": "developer", "to": "viewer"}

    def test_an_unknown_role_is_refused(self, as_alice, bob, org_a):
        response = as_alice.post(f"/members/{member_id(bob, org_a)}/role/", {"role": "superuser"})
        assert response.status_code == 400
        assert "Choose one of the roles" in response.content.decode()
        assert Membership.objects.get(user=bob, organization=org_a).role == Role.DEVELOPER

    def test_the_last_owner_cannot_be_demoted_but_one_of_two_can(self, as_alice, alice, bob, org_a):
        response = as_alice.post(f"/members/{member_id(alice, org_a)}/role/", {"role": "developer"})
        assert response.status_code == 400
        assert "the last owner cannot be given another role" in response.content.decode()
        assert Membership.objects.get(user=alice, organization=org_a).role == Role.OWNER
        as_alice.post(f"/members/{member_id(bob, org_a)}/role/", {"role": "owner"})
        assert as_alice.post(f"/members/{member_id(alice, org_a)}/role/", {"role": "viewer"}).status_code == 302
        assert Membership.objects.get(user=alice, organization=org_a).role == Role.VIEWER

    def test_only_owners_change_roles(self, as_bob, as_bill, as_vera, vera, org_a):
        for client in (as_bob, as_bill, as_vera):
            assert client.post(f"/members/{member_id(vera, org_a)}/role/", {"role": "owner"}).status_code == 403
        assert Membership.objects.get(user=vera, organization=org_a).role == Role.VIEWER


class TestRemove:
    def test_an_owner_removes_a_member(self, as_alice, bob, org_a):
        mid = member_id(bob, org_a)
        assert "Remove bob@example.com?" in as_alice.get(f"/members/{mid}/remove/").content.decode()
        assert as_alice.post(f"/members/{mid}/remove/").status_code == 302
        assert not Membership.objects.filter(pk=mid).exists()
        assert AuditEvent.objects.get(action="membership.remove").detail == {
            "email": "bob@example.com",
            "role": "developer",
        }
        # Bob no longer sees the organization: with no other membership he is asked to create one.
        assert client_for(bob).get("/").status_code == 302

    def test_the_last_owner_cannot_be_removed(self, as_alice, alice, org_a):
        response = as_alice.post(f"/members/{member_id(alice, org_a)}/remove/")
        assert response.status_code == 400
        assert "the last owner cannot be removed" in response.content.decode()
        assert Membership.objects.filter(user=alice, organization=org_a).exists()

    def test_an_owner_can_leave_when_another_owner_remains(self, as_alice, alice, bob, org_a):
        as_alice.post(f"/members/{member_id(bob, org_a)}/role/", {"role": "owner"})
        response = as_alice.post(f"/members/{member_id(alice, org_a)}/remove/")
        assert response.status_code == 302 and response["Location"] == "/"
        assert not Membership.objects.filter(user=alice, organization=org_a).exists()

    def test_only_owners_remove(self, as_bob, as_bill, as_vera, vera, org_a):
        for client in (as_bob, as_bill, as_vera):
            assert client.post(f"/members/{member_id(vera, org_a)}/remove/").status_code == 403
        assert Membership.objects.filter(user=vera).exists()


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner():
    """The organization row lock serialises membership changes: of two concurrent demotions, the second sees it
    would remove the last owner and is refused."""
    org = Organization.objects.create(name="Race")
    one, two = UserFactory(username="one@example.com"), UserFactory(username="two@example.com")
    m1 = Membership.objects.create(user=one, organization=org, role=Role.OWNER)
    m2 = Membership.objects.create(user=two, organization=org, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(target: Membership, actor: User) -> None:
        barrier.wait()
        try:
            membership_role_change(organization_id=org.pk, membership_id=target.pk, role="viewer", actor=actor)
            outcomes.append("changed")
        except ApplicationError as error:
            outcomes.append(error.code or "")
        finally:
            connection.close()

    for _ in range(5):
        Membership.objects.filter(pk__in=[m1.pk, m2.pk]).update(role=Role.OWNER)
        outcomes.clear()
        threads = [threading.Thread(target=demote, args=(m1, two)), threading.Thread(target=demote, args=(m2, one))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["changed", "last_owner"]
        assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


class TestInvitationConstraints:
    """The database holds the invitation rules too, whatever code writes the rows."""

    def make(self, org, **fields):
        now = timezone.now()
        values = {
            "email": "x@example.com",
            "role": "viewer",
            "token_hash": f"{len(fields):064d}",
            "sent_at": now,
            "expires_at": now + timedelta(days=1),
            **fields,
        }
        return Invitation.objects.create(organization=org, **values)

    @pytest.mark.parametrize(
        "fields",
        [
            {"role": "admin"},
            {"email": "Upper@example.com"},
            {"email": ""},
            {"expires_at": timezone.now() - timedelta(days=400)},
            {"accepted_at": timezone.now(), "revoked_at": timezone.now()},
        ],
    )
    def test_bad_rows_are_refused(self, org_a, fields):
        with pytest.raises(IntegrityError), transaction.atomic():
            self.make(org_a, **fields)

    def test_one_open_invitation_per_address(self, org_a, org_b):
        self.make(org_a, token_hash="a" * 64)
        self.make(org_b, token_hash="b" * 64)  # another organization may invite the same address
        self.make(org_a, token_hash="c" * 64, revoked_at=timezone.now())  # closed ones do not count
        with pytest.raises(IntegrityError), transaction.atomic():
            self.make(org_a, token_hash="d" * 64)


class TestInvitationLinksAndLogs:
    """The link is built from SITE_URL, never from the request's Host header (which the sender of the request
    chooses); and the token, which is the whole secret of the link, never reaches the logs."""

    @pytest.mark.parametrize("path", ["/members/invite/", "RESEND"])
    def test_the_link_uses_site_url_whatever_the_host_header(self, as_alice, alice, org_a, committing, settings, path):
        settings.SITE_URL = "https://billing.example.com"
        settings.ALLOWED_HOSTS = ["*"]  # as behind a proxy that passes any Host through
        if path == "RESEND":
            invitation = invitation_create(
                organization_id=org_a.pk, email="new@example.com", role="viewer", actor=alice
            )
            mail.outbox.clear()
            path = f"/members/invitations/{invitation.pk}/resend/"
            data = {}
        else:
            data = {"email": "new@example.com", "role": "viewer"}
        response = committing(as_alice.post, path, data, HTTP_HOST="attacker.example", secure=True)
        assert response.status_code == 302
        [message] = mail.outbox
        assert "attacker.example" not in message.body
        assert re.search(r"https://billing\.example\.com/invitations/\S+/", message.body), message.body

    def test_the_token_never_appears_in_the_logs(self, as_alice, invite, caplog, client):
        import logging

        caplog.set_level(logging.DEBUG)
        invite(as_alice, "dana@example.com", "developer")
        path = link_in(mail.outbox[-1])
        token = path.split("/")[2]
        # Opening it, a mistyped one (404), a revoked one (410): Django logs the path of every 4xx.
        assert Client().get(path).status_code == 200
        assert Client().get(path[:-2] + "x/").status_code == 404
        Invitation.objects.update(revoked_at=timezone.now())
        assert Client().get(path).status_code == 410
        logged = "\n".join(caplog.messages) + "\n".join(str(r.args) for r in caplog.records)
        assert "/invitations/" in logged  # the 404 and 410 were logged...
        assert token not in logged and token[:-1] not in logged  # ...without the token
