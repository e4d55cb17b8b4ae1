"""Pricing data: the model catalogue and its effective-dated price versions, plans, commitments, overrides."""

from billing.pricing.models.catalog import AIModel, Encoding, ModelKind, ModelStatus, PriceVersion

__all__ = ["AIModel", "Encoding", "ModelKind", "ModelStatus", "PriceVersion"]
