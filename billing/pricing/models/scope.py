"""What a plan allowance, commitment, override or tier schedule applies to: one model, or a group of models."""

from django.db import models
from django.db.models import Q


def scope_key(*, model_slug: str | None, group: str) -> str:
    """The scope as one string, the key of period counters: "model:<slug>" or "group:<group>"."""
    return f"model:{model_slug}" if model_slug else f"group:{group}"


def one_scope(prefix: str) -> models.CheckConstraint:
    """Exactly one of `model` and `group` is set."""
    return models.CheckConstraint(
        condition=(Q(model__isnull=False) & Q(group="")) | (Q(model__isnull=True) & ~Q(group="")),
        name=f"{prefix}_one_scope",
    )


class ScopedMixin(models.Model):
    """A model (the AI model) or a group of models. Concrete subclasses add the `one_scope` constraint."""

    model = models.ForeignKey("pricing.AIModel", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    group = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        abstract = True

    @property
    def scope_key(self) -> str:
        return scope_key(model_slug=self.model.slug if self.model is not None else None, group=self.group)

    @property
    def scope_label(self) -> str:
        return f"model {self.model.slug}" if self.model is not None else f"group {self.group}"
