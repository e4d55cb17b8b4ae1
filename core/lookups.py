"""`field__any=values`: the column equals one of the values, as `column = ANY(%s)` with the values in ONE array
parameter (typed by the driver from the values; a string array is typed by the column, as a literal is). The
values are plain values (any iterable of them), not a query or an expression.

`field__in=values` writes a `%s` marker per value: a filter on a thousand ids is SQL text of several kilobytes
that the driver (psycopg, binding on the client) parses again at every execution, since it caches only short
queries. With `__any` the text is the same whatever the number of values, so it is parsed once; the plan is the
same. Registered on every field by lookups_register(), from an app's ready() (see billing.invoicing.apps).
"""

from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db.models import Field, ForeignObject, Lookup


class AnyOf(Lookup):
    lookup_name = "any"
    # The values are prepared one by one, in one pass, below (a field's get_prep_value takes one value, not a list).
    prepare_rhs = False

    def get_prep_lookup(self) -> list[Any]:
        return list(self.rhs)

    def process_rhs(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        if not self.rhs:
            raise EmptyResultSet  # as `__in=[]`: matches nothing, and no query is sent when nothing else can match
        field = self.lhs.output_field
        return "%s", ([field.get_db_prep_value(value, connection, prepared=False) for value in self.rhs],)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, tuple[Any, ...]]:
        lhs_sql, lhs_params = self.process_lhs(compiler, connection)
        rhs_sql, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs_sql} = ANY({rhs_sql})", (*lhs_params, *rhs_params)


def lookups_register() -> None:
    # A relation keeps its own lookups apart from other fields' (`invoice_id__any`, `organization__any`).
    Field.register_lookup(AnyOf)
    ForeignObject.register_lookup(AnyOf)
