"""What the metered API keeps in the database: where each model is served.

`Upstream`: staff map a catalogue model to an OpenAI-compatible model server (vLLM, Ollama, llama.cpp server,
OpenAI...). Its API key is stored to call the server with, and never shown, logged or returned.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

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
