"""Development and test tooling that runs beside the product, never inside it."""
