"""The bottom layer: errors without HTTP, money, and the ORM helpers. Imports nothing of ours."""
