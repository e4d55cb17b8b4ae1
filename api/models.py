"""What the metered API keeps in the database: where each model is served, and each key's spending per period.

- `Upstream`: staff map a catalogue model to an OpenAI-compatible model server (vLLM, Ollama, llama.cpp server,
  OpenAI...). Its API key is stored to call the server with, and never shown, logged or returned.
- `KeySpend` / `KeySpendHold`: the per-key spend limit (ApiKey.spend_limit_nano per day/week/month) as a counter
  per key and period, moved by one conditional statement in the same transaction as the request's ledger hold,
  and corrected in the transaction that settles it (see api.gateway.metering).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

MAX_UPSTREAM_TIMEOUT_SECONDS = 1800


class Upstream(models.Model):
    """The model server that answers for one catalogue model."""

    model = models.OneToOneField("pricing.AIModel", on_delete=models.CASCADE, related_name="upstream")
    # OpenAI-compatible base URL, up to and including the version segment: https://api.example.com/v1
    base_url = models.URLField(max_length=500)
    # Sent as "Authorization: Bearer <api_key>" to the model server; never rendered anywhere.
    api_key = models.CharField(max_length=500, blank=True, default="")
    # The model name the server knows the model by (often not our catalogue id).
    upstream_model = models.CharField(max_length=200)
    # The whole request, first byte to last (streams included), must finish within this.
    timeout_seconds = models.PositiveIntegerField(default=120)
    # Whether the server honours OpenAI's `service_tier` (OpenAI itself does; vLLM, Ollama and llama.cpp do not):
    # only then is the client's tier forwarded. The gateway prices every tier either way.
    forwards_service_tier = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["model_id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(timeout_seconds__gte=1, timeout_seconds__lte=MAX_UPSTREAM_TIMEOUT_SECONDS),
                name="upstream_timeout_range",
            ),
            models.CheckConstraint(condition=~Q(upstream_model=""), name="upstream_model_not_empty"),
            models.CheckConstraint(
                condition=Q(base_url__startswith="http://") | Q(base_url__startswith="https://"),
                name="upstream_base_url_http",
            ),
        ]

    def __str__(self) -> str:
        return f"upstream of model {self.model_id} at {self.base_url}"


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

    def __str__(self) -> str:
        return f"{self.amount_nano} held for {self.request_id}"
