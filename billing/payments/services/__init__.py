"""Every write of the payments area. Other areas import from here: `from billing.payments import services`.

The contract with the metered API: `auto_topup_check(*, organization_id, available_nano)` (or its async twin
`aauto_topup_check`) after each settle or debit.
"""

from billing.payments.services.auto_topup import (
    auto_topup_charge,
    auto_topup_failure_notify,
    auto_topup_send,
    auto_topups_resume,
)
from billing.payments.services.auto_topup_config import (
    auto_topup_card_save,
    auto_topup_card_start,
    auto_topup_update,
)
from billing.payments.services.auto_topup_trigger import aauto_topup_check, auto_topup_cache_clear, auto_topup_check
from billing.payments.services.cards import SavedCardRemoved, saved_card_keep, saved_card_remove
from billing.payments.services.customers import stripe_customer_ensure
from billing.payments.services.reconcile import topups_expire, topups_expire_unconfirmed, topups_reconcile
from billing.payments.services.refunds import RefundCreated, refund_create, refund_send, refunds_resume
from billing.payments.services.topups import (
    TopUpCharged,
    TopUpStarted,
    topup_pay,
    topup_start,
    topup_sync,
)
from billing.payments.services.webhooks import stripe_event_process, stripe_event_receive, stripe_events_retry

__all__ = [
    "RefundCreated",
    "SavedCardRemoved",
    "TopUpCharged",
    "TopUpStarted",
    "aauto_topup_check",
    "auto_topup_cache_clear",
    "auto_topup_card_save",
    "auto_topup_card_start",
    "auto_topup_charge",
    "auto_topup_check",
    "auto_topup_failure_notify",
    "auto_topup_send",
    "auto_topup_update",
    "auto_topups_resume",
    "refund_create",
    "refund_send",
    "refunds_resume",
    "saved_card_keep",
    "saved_card_remove",
    "stripe_customer_ensure",
    "stripe_event_process",
    "stripe_event_receive",
    "stripe_events_retry",
    "topup_pay",
    "topup_start",
    "topup_sync",
    "topups_expire",
    "topups_expire_unconfirmed",
    "topups_reconcile",
]
