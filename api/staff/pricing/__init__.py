"""Staff REST API for pricing: models, price versions, tier schedules, plans, commitment offers and purchases,
overrides, subscriptions, preview and the pricing audit log. Staff only (is_staff)."""
