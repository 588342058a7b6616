"""ksqlDB's SQL types, as small immutable values.

Types drive everything downstream: which serializer a column gets, how an expression is
compiled (integer vs. decimal vs. double arithmetic), and the type names shown in DESCRIBE and
push-query headers, so they live in one place shared by parser, planner, runtime and formats.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SqlType:
    """`base` is one of BOOLEAN, INTEGER, BIGINT, DOUBLE, STRING, DECIMAL, TIMESTAMP, DATE, TIME,
    BYTES, ARRAY, MAP, STRUCT. Parameters: DECIMAL precision/scale, ARRAY/MAP item types, STRUCT
    fields (name, type)."""

    base: str
    precision: int = 0
    scale: int = 0
    item: SqlType | None = None
    key: SqlType | None = None
    fields: tuple[tuple[str, SqlType], ...] = ()

    def __str__(self) -> str:
        if self.base == "DECIMAL":
            return f"DECIMAL({self.precision}, {self.scale})"
        if self.base == "ARRAY":
            return f"ARRAY<{self.item}>"
        if self.base == "MAP":
            return f"MAP<{self.key}, {self.item}>"
        if self.base == "STRUCT":
            inner = ", ".join(f"`{n}` {t}" for n, t in self.fields)
            return f"STRUCT<{inner or ' '}>"  # ksqlDB writes the empty struct `STRUCT< >`
        return self.base

    @property
    def is_numeric(self) -> bool:
        return self.base in NUMERIC

    @property
    def is_primitive(self) -> bool:
        return self.base not in ("ARRAY", "MAP", "STRUCT")

    def contains(self, base: str) -> bool:
        """Whether this type or any nested type is `base` (e.g. maps inside keys)."""
        if self.base == base:
            return True
        nested = [t for t in (self.item, self.key) if t is not None] + [t for _, t in self.fields]
        return any(t.contains(base) for t in nested)

    def schema_json(self) -> dict[str, object]:
        """ksqlDB's REST `schema` object (`type`, `fields`, `memberSchema`)."""
        base = "STRING" if self.base == "STRING" else self.base
        out: dict[str, object] = {"type": base, "fields": None, "memberSchema": None}
        if self.base in ("ARRAY", "MAP") and self.item is not None:
            out["memberSchema"] = self.item.schema_json()
        elif self.base == "STRUCT":
            out["fields"] = [{"name": n, "schema": t.schema_json()} for n, t in self.fields]
        elif self.base == "DECIMAL":
            out["parameters"] = {"precision": self.precision, "scale": self.scale}
        return out


NUMERIC = ("INTEGER", "BIGINT", "DECIMAL", "DOUBLE")
BOOLEAN = SqlType("BOOLEAN")
INTEGER = SqlType("INTEGER")
BIGINT = SqlType("BIGINT")
DOUBLE = SqlType("DOUBLE")
STRING = SqlType("STRING")
TIMESTAMP = SqlType("TIMESTAMP")
DATE = SqlType("DATE")
TIME = SqlType("TIME")
BYTES = SqlType("BYTES")


def decimal(precision: int, scale: int) -> SqlType:
    return SqlType("DECIMAL", precision=precision, scale=scale)


def array(item: SqlType) -> SqlType:
    return SqlType("ARRAY", item=item)


def map_of(key: SqlType, value: SqlType) -> SqlType:
    return SqlType("MAP", key=key, item=value)


def struct(fields: list[tuple[str, SqlType]]) -> SqlType:
    return SqlType("STRUCT", fields=tuple(fields))


def as_decimal(t: SqlType) -> SqlType:
    """The decimal a whole-number type widens to in decimal arithmetic (ksqlDB's rule)."""
    if t.base == "INTEGER":
        return decimal(10, 0)
    if t.base == "BIGINT":
        return decimal(19, 0)
    return t


NAMED: dict[str, SqlType] = {
    "BOOLEAN": BOOLEAN,
    "INT": INTEGER,
    "INTEGER": INTEGER,
    "BIGINT": BIGINT,
    "DOUBLE": DOUBLE,
    "STRING": STRING,
    "VARCHAR": STRING,
    "TIMESTAMP": TIMESTAMP,
    "DATE": DATE,
    "TIME": TIME,
    "BYTES": BYTES,
}

ColumnDef = tuple[str, SqlType]
"""A named column of a schema (key, value or header column): what formats and plans take (the
data of a batch is a `services.common.avro.columns.Column`)."""
