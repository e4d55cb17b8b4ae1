"""What the gateway needs to know about a model and its caller, cached in process (see api.gateway.cache).

- `model_get`: the catalogue entry (encoding, kind, token limits, status);
- `pricing_context_get`: the organization's PricingContext for the model (prices, plan limits, reserved
  throughput), from billing.pricing.selectors; a price change reaches the hot path within GATEWAY_CACHE_SECONDS;
- `route_get` (api.gateway.upstreams) says which model server answers.
"""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from api.gateway.cache import TTLCache
from api.gateway.http import GatewayError
from billing.pricing import rating, selectors
from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel, ModelStatus
from core.orm import orm_call

DEMO_MODEL = "demo"

_models: TTLCache["ModelInfo | None"] = TTLCache("models")
_contexts: TTLCache["rating.PricingContext | None"] = TTLCache("pricing-contexts")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    id: int
    slug: str
    kind: str  # "chat" | "embedding"
    encoding: str
    context_window: int
    default_max_tokens: int
    max_output_tokens: int
    status: str
    sunset_at: datetime | None

    def callable_at(self, at: datetime) -> bool:
        return self.status == ModelStatus.ACTIVE or (self.sunset_at is not None and self.sunset_at > at)


def _model_load(slug: str) -> ModelInfo | None:
    row = (
        AIModel.objects.filter(slug=slug)
        .values_list(
            "id",
            "slug",
            "kind",
            "encoding",
            "context_window",
            "default_max_tokens",
            "max_output_tokens",
            "status",
            "sunset_at",
        )
        .first()
    )
    return None if row is None else ModelInfo(*row)


def model_not_found(slug: str) -> GatewayError:
    return GatewayError(
        404,
        f"The model '{slug}' does not exist or you do not have access to it. GET /v1/models lists the models "
        "you can call.",
        code="model_not_found",
        param="model",
    )


async def model_get(slug: str, *, kind: str | None) -> ModelInfo:
    """The callable catalogue model `slug` of `kind` (None: any); GatewayError 404 / 400 otherwise."""
    info = await _models.get(slug, lambda: orm_call(_model_load, slug))
    if info is None or not info.callable_at(timezone.now()):
        raise model_not_found(slug)
    # The built-in demo model (a chat model in the catalogue) answers embeddings too, so that the quickstart's SDK
    # examples work on it; such a call is priced at its input price, like any embeddings call.
    if kind is not None and info.kind != kind and not (slug == DEMO_MODEL and kind == "embedding"):
        endpoint = "/v1/embeddings" if info.kind == "embedding" else "/v1/chat/completions"
        raise GatewayError(
            400,
            f"The model '{slug}' is a {info.kind} model; call it at {endpoint}.",
            code="wrong_endpoint_for_model",
            param="model",
        )
    return info


def _context_load_sync(organization_id: int, slug: str) -> rating.PricingContext | None:
    try:
        return selectors.pricing_context_get(organization_id=organization_id, model_slug=slug, at=timezone.now())
    except ModelNotFound:
        return None


async def pricing_context_get(*, organization_id: int, model_slug: str) -> rating.PricingContext:
    context = await _contexts.get(
        (organization_id, model_slug),
        lambda: orm_call(_context_load_sync, organization_id, model_slug),
    )
    if context is None:
        raise model_not_found(model_slug)
    return context
