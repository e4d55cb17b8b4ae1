"""Pagination of the REST API, with its query parameters checked.

DRF's own classes read `limit` and `offset` with int(), which takes other scripts' digits ("٣" is 3), and pass
them on unbounded: `?limit=18446744073709551617` reached PostgreSQL and failed there (bigint out of range, a 500),
and a mistyped value was quietly replaced by the default. Here a value is the ASCII digits of a number in range,
or a 400 that names the parameter and says what it takes.
"""

from typing import Any

from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor, CursorPagination, LimitOffsetPagination
from rest_framework.request import Request

from accounts.ids import is_id_text
from core.errors import ApplicationError

MAX_LIMIT = 500
# Far beyond any list's length, and small enough that offset + limit stays a bigint.
MAX_OFFSET = 10**9


def query_whole_number(request: Request, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """The query parameter `name` as a whole number from `minimum` to `maximum`; `default` when it is absent or
    empty; a ValidationError (400, naming it) otherwise."""
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    if not is_id_text(raw) or not minimum <= int(raw) <= maximum:
        raise serializers.ValidationError({name: [f"A whole number from {minimum} to {maximum}."]})
    return int(raw)


def query_choice(request: Request, name: str, choices: list[str]) -> str | None:
    """The query parameter `name` if it is one of `choices`; None when it is absent or empty; a 400 naming it
    otherwise."""
    raw = request.query_params.get(name) or None
    if raw is not None and raw not in choices:
        raise ApplicationError(f"{name} must be one of {', '.join(choices)}", param=name)
    return raw


def _bounded(parameter: dict[str, Any], *, minimum: int, maximum: int) -> dict[str, Any]:
    parameter["schema"] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    return parameter


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`?limit=` (1 to 500, default PAGE_SIZE) and `?offset=` (0 to 10^9); a count, and next/previous links."""

    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        assert self.default_limit is not None  # PAGE_SIZE is set
        return query_whole_number(
            request, self.limit_query_param, default=self.default_limit, minimum=1, maximum=MAX_LIMIT
        )

    def get_offset(self, request: Request) -> int:
        return query_whole_number(request, self.offset_query_param, default=0, minimum=0, maximum=MAX_OFFSET)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        return [
            _bounded(limit, minimum=1, maximum=MAX_LIMIT),
            _bounded(offset, minimum=0, maximum=MAX_OFFSET),
        ]


class StrictCursorPagination(CursorPagination):
    """A cursor over a table's id, newest first, with `?limit=` (1 to `max_page_size`) checked. A cursor whose
    position is not an id (a hand-made one) is refused like any other invalid cursor, before it reaches a query."""

    ordering = "-id"
    page_size_query_param = "limit"
    max_page_size = MAX_LIMIT

    def get_page_size(self, request: Request) -> int:
        assert self.page_size_query_param is not None and self.page_size is not None
        return query_whole_number(
            request, self.page_size_query_param, default=self.page_size, minimum=1, maximum=MAX_LIMIT
        )

    def decode_cursor(self, request: Request) -> Cursor | None:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not is_id_text(cursor.position):
            raise NotFound(self.invalid_cursor_message)
        return cursor

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                _bounded(parameter, minimum=1, maximum=MAX_LIMIT)
        return parameters
