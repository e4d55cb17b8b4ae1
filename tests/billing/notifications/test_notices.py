"""Low-balance and expiring-credit notices: when they are due, who is told, and that each goes out once a day."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection

from accounts.models import Role
from billing.ledger import services as ledger
from billing.notifications import selectors, services
from billing.notifications.models import Notice, NotificationSettings
from billing.notifications.tasks import notifications_check_task
from core.money import parse_amount
from tests.accounts.factories import MembershipFactory, OrganizationFactory, UserFactory

DAY_ONE = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def cast(org_a, alice, bob):
    """alice owns org A, bill is its billing admin (both are told), bob the developer and vera the viewer are not."""
    for email, role in (("bill@example.com", Role.BILLING_ADMIN), ("vera@example.com", Role.VIEWER)):
        MembershipFactory(user=UserFactory(username=email), organization=org_a, role=role)
    return org_a


def grant(org, amount: str, key: str, **options) -> None:
    ledger.grant_create(
        organization_id=org.pk,
        kind="paid",
        amount_nano=parse_amount(amount),
        idempotency_key=key,
        actor="test",
        **options,
    )


def spend(org, amount: str, key: str) -> None:
    ledger.wallet_debit(organization_id=org.pk, amount_nano=parse_amount(amount), idempotency_key=key, actor="test")


def prefs(org, **changes) -> None:
    values = {
        "low_balance_enabled": True,
        "low_balance_threshold_nano": parse_amount("5"),
        "credit_expiring_enabled": True,
        "credit_expiring_days": 7,
        "email_enabled": True,
        **changes,
    }
    services.notification_settings_update(organization_id=org.pk, actor=None, **values)


def check(committing) -> int:
    """The beat task, with its after-commit emails run (the test's transaction never commits)."""
    return committing(notifications_check_task)


class TestLowBalance:
    def test_the_email_writes_amounts_with_the_one_display_rule(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "10", "g")
            spend(cast, "9.99999992", "s")  # 0.00000008 left: never "$0.00"
            assert check(committing) == 1
            [message] = mail.outbox
            assert "Low balance: $0.00000008 left for Org A" in message.subject
            assert "is $0.00000008, below the $5.00" in " ".join(message.body.split())

    def test_once_a_day_to_owners_and_billing_admins(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "10", "g")
            spend(cast, "7", "s")  # $3 left, below the default $5
            assert check(committing) == 1
            [message] = mail.outbox
            assert sorted(message.to) == ["alice@example.com", "bill@example.com"]
            assert "Low balance: $3.00 left for Org A" in message.subject
            assert "below the $5.00" in message.body and "/billing/top-up/" in message.body
            # Every later check that day finds the notice already sent.
            assert check(committing) == 0
        with time_machine.travel(DAY_ONE.replace(hour=23, minute=59, second=59), tick=False):
            assert check(committing) == 0
        assert len(mail.outbox) == 1
        with time_machine.travel(DAY_ONE + timedelta(days=1), tick=False):
            assert check(committing) == 1
            assert check(committing) == 0
        assert len(mail.outbox) == 2
        notices = list(Notice.objects.order_by("created_at").values_list("dedupe_key", "recipients"))
        assert notices == [
            ("low_balance:2026-04-01", ["alice@example.com", "bill@example.com"]),
            ("low_balance:2026-04-02", ["alice@example.com", "bill@example.com"]),
        ]

    def test_not_while_above_the_threshold_nor_for_an_organization_that_never_had_credit(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            ledger.wallet_get_or_create(organization_id=cast.pk)  # a wallet with nothing in it
            assert check(committing) == 0
            grant(cast, "5", "g")  # exactly the threshold is not below it
            assert check(committing) == 0
            prefs(cast, low_balance_threshold_nano=parse_amount("5.01"))
            assert check(committing) == 1
        assert len(mail.outbox) == 1

    def test_turned_off(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "1", "g")
            prefs(cast, low_balance_enabled=False)
            assert check(committing) == 0
        assert mail.outbox == []

    def test_email_off_still_records_the_notice_for_the_dashboard(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "1", "g")
            prefs(cast, email_enabled=False)
            assert check(committing) == 1
            assert mail.outbox == []
            # Turned back on the same day: the day's notice goes out then, once.
            prefs(cast, email_enabled=True)
            assert check(committing) == 0
            assert check(committing) == 0
        assert len(mail.outbox) == 1


class TestExpiringCredit:
    def test_within_the_chosen_window_once_a_day(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "50", "paid")
            grant(cast, "8", "promo", expires_at=DAY_ONE + timedelta(days=10))
            assert check(committing) == 0  # ten days away; the default window is seven
        with time_machine.travel(DAY_ONE + timedelta(days=3, hours=1), tick=False):
            assert check(committing) == 1
            [message] = mail.outbox
            assert "$8.00 of credit expires soon for Org A" in message.subject
            assert "within 7 days" in message.body and "11 April 2026, 09:00 UTC" in message.body
            assert check(committing) == 0
        with time_machine.travel(DAY_ONE + timedelta(days=4), tick=False):
            assert check(committing) == 1
        # Once it has expired there is nothing left to warn about.
        with time_machine.travel(DAY_ONE + timedelta(days=11), tick=False):
            assert check(committing) == 0
        assert len(mail.outbox) == 2

    def test_a_longer_window(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "50", "paid")
            grant(cast, "8", "promo", expires_at=DAY_ONE + timedelta(days=30))
            prefs(cast, credit_expiring_days=30)
            assert check(committing) == 1
        assert "within 30 days" in mail.outbox[0].body

    def test_both_kinds_on_the_same_day_are_two_notices(self, cast, committing):
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "2", "promo", expires_at=DAY_ONE + timedelta(days=2))
            assert check(committing) == 2
        assert sorted(Notice.objects.values_list("kind", flat=True)) == ["credit_expiring", "low_balance"]
        assert len(mail.outbox) == 2


class TestSending:
    def test_two_checks_racing_send_once(self, cast, committing):
        """The notice row is unique per day and the email is claimed by a conditional UPDATE."""
        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "1", "g")
            first = committing(services.notices_send, organization_id=cast.pk)
            second = committing(services.notices_send, organization_id=cast.pk)
        assert (len(first), len(second)) == (1, 0)
        notice = Notice.objects.get()
        assert services.notice_email_send(notice_id=notice.pk) is False  # already claimed and sent
        assert len(mail.outbox) == 1

    def test_a_failed_send_is_retried_by_the_next_check(self, cast, committing, monkeypatch):
        import billing.notifications.services as module

        def broken(*args, **kwargs):
            raise ConnectionRefusedError("smtp down")

        with time_machine.travel(DAY_ONE, tick=False):
            grant(cast, "1", "g")
            monkeypatch.setattr(module, "send_mail", broken)
            assert check(committing) == 1
            assert Notice.objects.get().emailed_at is None
            monkeypatch.undo()
            assert check(committing) == 0
        assert len(mail.outbox) == 1
        assert Notice.objects.get().emailed_at is not None

    def test_nobody_to_tell(self, db, committing):
        org = OrganizationFactory(name="Lonely")
        MembershipFactory(organization=org, role=Role.DEVELOPER)
        with time_machine.travel(DAY_ONE, tick=False):
            grant(org, "1", "g")
            assert check(committing) == 1
        assert mail.outbox == []
        assert Notice.objects.get().recipients == []


def test_only_organizations_that_may_need_a_notice_are_checked(cast, org_b, charlie):
    quiet = OrganizationFactory(name="Quiet")
    with time_machine.travel(DAY_ONE, tick=False):
        grant(quiet, "100", "q")
        grant(org_b, "1", "b")  # low
        grant(cast, "100", "a")
        grant(cast, "1", "a-promo", expires_at=DAY_ONE + timedelta(days=60))  # within the widest window
        assert selectors.organizations_to_check(now=DAY_ONE) == sorted([org_b.pk, cast.pk])


class TestSettings:
    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"low_balance_threshold_nano": 0}, "greater than zero"),
            ({"low_balance_threshold_nano": -1}, "greater than zero"),
            ({"low_balance_threshold_nano": 10**30}, "at most"),
            ({"low_balance_threshold_nano": "5"}, "whole number"),
            ({"credit_expiring_days": 0}, "between 1 and 90"),
            ({"credit_expiring_days": 91}, "between 1 and 90"),
            ({"email_enabled": "yes"}, "true or false"),
        ],
    )
    def test_bad_values_are_refused(self, org_a, changes, message):
        from core.errors import ApplicationError

        with pytest.raises(ApplicationError, match=message):
            prefs(org_a, **changes)
        assert not NotificationSettings.objects.exists()

    def test_defaults_until_changed(self, org_a):
        defaults = selectors.notification_settings_get(organization_id=org_a.pk)
        assert defaults.pk is None
        assert (defaults.low_balance_threshold_nano, defaults.credit_expiring_days) == (parse_amount("5"), 7)
        prefs(org_a, credit_expiring_days=14)
        assert selectors.notification_settings_get(organization_id=org_a.pk).credit_expiring_days == 14


@pytest.mark.django_db(transaction=True)
def test_checks_racing_on_their_own_connections_record_and_email_a_notice_once(cast):
    """The check above runs twice in a row; here eight run at the same moment, each in its own transaction."""
    grant(cast, "1", "g")
    start = threading.Barrier(8)

    def send(_: int) -> int:
        try:
            start.wait()
            return len(services.notices_send(organization_id=cast.pk, now=DAY_ONE))
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(send, range(8)))
    assert sorted(created) == [0] * 7 + [1]
    assert Notice.objects.count() == 1
    assert len(mail.outbox) == 1


@pytest.mark.django_db(transaction=True)
def test_senders_racing_on_one_notice_email_it_once(cast):
    """Two checks can both schedule the email of one notice (the second found it before the first had sent it);
    the claim on `emailed_at` lets one of them send."""
    grant(cast, "1", "g")
    (notice,) = services.notices_send(organization_id=cast.pk, now=DAY_ONE)
    mail.outbox.clear()  # the send scheduled after commit above; the race below starts from an unsent notice
    Notice.objects.filter(pk=notice.pk).update(emailed_at=None)
    start = threading.Barrier(8)

    def send(_: int) -> bool:
        try:
            start.wait()
            return services.notice_email_send(notice_id=notice.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(8) as pool:
        sent = list(pool.map(send, range(8)))
    assert sorted(sent) == [False] * 7 + [True]
    assert len(mail.outbox) == 1
    assert Notice.objects.get(pk=notice.pk).emailed_at is not None
