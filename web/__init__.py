"""Server-rendered customer pages: dashboard, usage, pricing, and the current-organization context."""
