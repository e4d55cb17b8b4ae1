"""Ids that arrive as text (URLs, query strings, forms, Stripe metadata)."""

from typing import TypeGuard


def is_id_text(raw: object) -> TypeGuard[str]:
    """Whether `raw` is an id as text: 1 to 18 ASCII digits (a bigint). str.isdigit() and int() alone also accept
    other scripts' digits (Arabic-Indic or full-width 3 read as 3) and superscripts ("²", which int() then refuses
    with a ValueError)."""
    return isinstance(raw, str) and 0 < len(raw) <= 18 and raw.isascii() and raw.isdigit()
