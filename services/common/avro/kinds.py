"""The Avro primitive kinds of the compiled codecs, apart from the codecs themselves.

`services.common.avro.kernels` compiles its loops with numba, which takes a command about half a
second to import; the schema planner (`schemas.py`, used by `fraudstream alerts` and the console)
only needs these names, so they live here and `kernels` re-exports them.
"""

from __future__ import annotations

KIND_DOUBLE, KIND_FLOAT, KIND_VARINT, KIND_BOOLEAN, KIND_BYTES, KIND_STRING = range(6)
KINDS: dict[str, int] = {
    "double": KIND_DOUBLE,
    "float": KIND_FLOAT,
    "int": KIND_VARINT,
    "long": KIND_VARINT,
    "boolean": KIND_BOOLEAN,
    "string": KIND_STRING,
    "bytes": KIND_BYTES,
}
"""A string is bytes that must be well-formed UTF-8 (the walker checks, as fastavro does)."""
FLOAT_KINDS = (KIND_DOUBLE, KIND_FLOAT, KIND_BOOLEAN)
SPAN_KINDS = (KIND_BYTES, KIND_STRING)
