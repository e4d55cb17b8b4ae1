"""The metered, OpenAI-compatible API under /v1: async views on ASGI (DESIGN decision 7)."""
