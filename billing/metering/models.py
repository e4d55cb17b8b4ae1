"""Each API key's spending per period: the per-key spend limit (ApiKey.spend_limit_nano per day/week/month) as a
counter per key and period, moved by one conditional statement in the same transaction as the request's ledger
hold, and corrected in the transaction that settles it (see billing.metering.holds and billing.metering.spend).
"""

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class KeySpend(models.Model):
    """What one API key spent (captured) and holds (requests in flight) in one spend-limit period.

    spent + held never exceeds the key's limit when a request is admitted: the gateway raises `held` with one
    conditional statement in the transaction that places the ledger hold, and moves the settled part to `spent`
    in the transaction that settles it.
    """

    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="spend_periods")
    # Start of the calendar period (UTC) of the key's spend_limit_period (accounts.selectors.apikey_spend_window).
    window_start = models.DateTimeField()
    spent_nano = models.BigIntegerField(default=0)
    held_nano = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "window_start"], name="keyspend_one_per_period"),
            models.CheckConstraint(condition=Q(spent_nano__gte=0), name="keyspend_spent_not_negative"),
            models.CheckConstraint(condition=Q(held_nano__gte=0), name="keyspend_held_not_negative"),
        ]
        # The table was made when the gateway owned it; its SQL (billing.metering.spend) names it.
        db_table = "api_keyspend"

    def __str__(self) -> str:
        return f"key {self.api_key_id} from {self.window_start:%Y-%m-%d}: {self.spent_nano} spent"


class KeySpendHold(models.Model):
    """One request's part of KeySpend.held_nano, until its settle (or the sweeper, when its ledger hold expired
    unsettled) removes it. Whoever deletes the row applies the correction, so it is applied exactly once."""

    key_spend = models.ForeignKey(KeySpend, on_delete=models.CASCADE, related_name="holds")
    # The gateway request id; its ledger hold's idempotency key is "gw:<request_id>".
    request_id = models.CharField(max_length=200, unique=True)
    amount_nano = models.BigIntegerField()
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount_nano__gt=0), name="keyspendhold_amount_positive"),
        ]
        db_table = "api_keyspendhold"

    def __str__(self) -> str:
        return f"{self.amount_nano} held for {self.request_id}"
