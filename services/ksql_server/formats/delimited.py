"""The DELIMITED format: CSV lines as ksqlDB reads and writes them (one compiled pass per batch
for the hot path, `csv` for the rest)."""

from __future__ import annotations

import base64
import csv
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.base import (
    DECIMAL_CONTEXT,
    Deserializer,
    SerdeError,
    Serializer,
    safe_deserialize,
)
from services.ksql_server.formats.columnar import delimited_columns_decoder
from services.ksql_server.types import ColumnDef, SqlType
from services.ksql_server.values import java_double


def _delimited_parser(typ: SqlType) -> Callable[[str], Any]:
    base = typ.base
    if base in ("INTEGER", "BIGINT"):
        return int
    if base == "DOUBLE":
        return float
    if base == "STRING":
        return str
    if base == "BOOLEAN":

        def boolean(s: str) -> bool:
            low = s.strip().lower()
            if low not in ("true", "false"):
                raise SerdeError(f"Can't coerce '{s}' to BOOLEAN")
            return low == "true"

        return boolean
    if base == "DECIMAL":
        q = Decimal(1).scaleb(-typ.scale)
        return lambda s: Decimal(s).quantize(q, context=DECIMAL_CONTEXT)
    if base in ("TIMESTAMP", "DATE", "TIME"):
        return int
    if base == "BYTES":
        return base64.b64decode
    raise KsqlError(f"The 'DELIMITED' format does not support type '{base}'")


def delimited_deserializer(columns: Sequence[ColumnDef], delimiter: str) -> Deserializer:
    """Split (csv only when quotes need it) and convert every field with one generated function:
    the DELIMITED source is the pipeline's hot path."""
    parsers = [_delimited_parser(t) for _, t in columns]
    n = len(parsers)
    ns: dict[str, Any] = {f"_p{i}": p for i, p in enumerate(parsers)}
    pieces = []
    i = 0
    while i < n:
        j = i
        while j < n and parsers[j] is parsers[i]:
            j += 1
        p = parsers[i]
        if j - i > 2 and p is not str:
            # a run of same-typed columns: one map() when none of them is empty
            pieces.append(
                f"(list(map(_p{i}, s{i})) if '' not in (s{i} := f[{i}:{j}]) else "
                f"[None if x == '' else _p{i}(x) for x in s{i}])"
            )
        else:
            cells = []
            for k in range(i, j):
                if parsers[k] is str:
                    cells.append(f"(None if (x{k} := f[{k}]) == '' else x{k})")
                else:
                    cells.append(f"(None if (x{k} := f[{k}]) == '' else _p{k}(x{k}))")
            pieces.append("[" + ", ".join(cells) + "]")
        i = j
    src = "def _convert(f):\n    return " + " + ".join(pieces) + "\n"
    exec(compile(src, "<delimited>", "exec"), ns)
    convert = ns["_convert"]
    reader = csv.reader

    def split(text: str) -> list[str]:
        fields = text.split(delimiter)
        if '"' not in text:
            return fields
        stripped = [f[1:-1] if len(f) > 1 and f[0] == '"' and f[-1] == '"' else f for f in fields]
        if any('"' in f for f in stripped):
            return next(reader([text], delimiter=delimiter, strict=False), [])
        return stripped

    def batch(values: list[bytes | None]) -> list[Any]:
        """Many records at once: one csv.reader pass over the batch (C speed)."""
        try:
            texts = [v.decode("utf-8") if v is not None else "" for v in values]
        except UnicodeDecodeError:  # the bad record gets its error in place, the others values
            return [safe_deserialize(deser, v) for v in values]
        joined = "".join(texts)
        if "\n" in joined or "\r" in joined:
            return [safe_deserialize(deser, v) for v in values]
        parsed = list(reader(texts, delimiter=delimiter, strict=False))
        if len(parsed) != len(values):  # an open quote ran on into the next record
            return [safe_deserialize(deser, v) for v in values]
        out: list[Any] = []
        for v, fields in zip(values, parsed, strict=True):
            if v is None:
                out.append(None)
            elif len(fields) != n:
                out.append(
                    SerdeError(f"Unexpected field count, csvFields:{len(fields)} schemaFields:{n}")
                )
            else:
                try:
                    out.append(convert(fields))
                except (ValueError, ArithmeticError) as exc:
                    out.append(SerdeError(f"Failed to deserialise a field: {exc}"))
        return out

    def deser(data: bytes | None) -> list[Any] | None:
        if data is None:
            return None
        fields = split(data.decode("utf-8"))
        if len(fields) != n:
            raise SerdeError(f"Unexpected field count, csvFields:{len(fields)} schemaFields:{n}")
        try:
            return convert(fields)  # type: ignore[no-any-return]
        except (ValueError, ArithmeticError) as exc:
            raise SerdeError(f"Failed to deserialise a field: {exc}") from exc

    deser.batch = batch  # type: ignore[attr-defined]
    # column-wise decoding of a whole batch (None for batches it can't take): see columnar.py
    deser.columns = delimited_columns_decoder([t for _, t in columns], delimiter)  # type: ignore[attr-defined]
    return deser


def _delimited_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return java_double(v)
    if isinstance(v, Decimal):
        return f"{v:f}"
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return str(v)


def _needs_quotes(s: str, first: bool, delimiter: str) -> bool:
    """Apache Commons CSV's QuoteMode.MINIMAL rule, which ksqlDB's DELIMITED writer uses."""
    if not s:
        return first
    c = s[0]
    if c <= "#":
        return True
    if (first and not c.isascii()) or (first and not c.isalnum()):
        return True
    if any(ch in s for ch in ("\n", "\r", '"', delimiter)):
        return True
    return s[-1] <= " "


def delimited_serializer(columns: Sequence[ColumnDef], delimiter: str) -> Serializer:
    def field(v: Any, first: bool) -> str:
        if v is None:
            return ""
        s = _delimited_text(v)
        if _needs_quotes(s, first, delimiter):
            return '"' + s.replace('"', '""') + '"'
        return s

    def ser(row: Sequence[Any]) -> bytes:
        return delimiter.join(field(v, i == 0) for i, v in enumerate(row)).encode("utf-8")

    return ser
