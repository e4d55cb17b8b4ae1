"""The staff REST API under /api/staff/: is_staff users only, by session (browser) or token (automation)."""
