"""Resolving what a plan allowance, commitment offer, override or tier schedule applies to."""

from billing.pricing.errors import ModelNotFound
from billing.pricing.models import AIModel
from core.errors import ApplicationError


def scope_resolve(*, model_slug: str | None, group: str | None) -> tuple[AIModel | None, str]:
    """(model, "") for a model, (None, group) for a group; exactly one must be given and must exist."""
    group = (group or "").strip()
    if bool(model_slug) == bool(group):
        raise ApplicationError("Give exactly one of model and group.", param="model", code="invalid_scope")
    if model_slug:
        model = AIModel.objects.filter(slug=model_slug).first()
        if model is None:
            raise ModelNotFound(f"The model '{model_slug}' does not exist.", param="model")
        return model, ""
    if not AIModel.objects.filter(group=group).exists():
        raise ApplicationError(f"No model is in the group '{group}'.", param="group", code="unknown_group")
    return None, group
