"""Customer notifications: low balance and credit about to expire, by email and on the dashboard."""
