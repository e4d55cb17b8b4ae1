"""The staff pricing console: server-rendered pages under /staff/pricing/ (staff only)."""
