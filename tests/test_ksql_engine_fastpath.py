"""The column-wise fast paths (DELIMITED batch decoding, Avro batch encoding, the runtime's
column-wise filter + projection) against the exact per-record paths they stand in for."""

from __future__ import annotations

import io
import json
import struct
from typing import Any, cast

import fastavro
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.avro.columns import ColumnBatch
from services.common.avro.wire import header_of
from services.common.errors import RecordRejected
from services.ksql_server import types as T
from services.ksql_server.formats import make_deserializer
from services.ksql_server.formats.avro import sink_schema
from services.ksql_server.formats.base import SerdeError, deserialize_batch
from services.ksql_server.formats.columnar import (
    columns_from_rows,
    delimited_columns_decoder,
    encode_avro,
)
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.metastore import DataSource, MetaStore
from services.ksql_server.parser.parser import parse
from services.ksql_server.planner.plan import plan_select
from services.ksql_server.runtime.processor import BatchProcessor, ProcessingLog

COLUMNS = [
    ("ID", T.BIGINT),
    ("NAME", T.STRING),
    ("N", T.INTEGER),
    ("A", T.DOUBLE),
    ("B", T.DOUBLE),
    ("CLASS", T.STRING),
]
TYPES = [t for _, t in COLUMNS]


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type; floats compared bit for bit (-0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return bool(a == b)


def _row_path(values: list[bytes | None], delimiter: str = ",") -> list[Any]:
    deser = make_deserializer(FormatInfo("DELIMITED", delimiter), COLUMNS, "t", False)
    return deserialize_batch(deser, values)


def _columnar(values: list[bytes | None], delimiter: str = ",") -> ColumnBatch | None:
    decode = delimited_columns_decoder(TYPES, delimiter)
    assert decode is not None
    return decode(values)


def _rows_of(batch: ColumnBatch) -> list[list[Any]]:
    columns = [batch.column_values(j) for j in range(len(batch.columns))]
    return [list(r) for r in zip(*columns, strict=True)]


def _assert_matches_row_path(values: list[bytes | None], delimiter: str = ",") -> bool:
    """The fast path either declines, or gives exactly the row path's values; it never accepts
    a batch in which the row path finds an error. Returns whether it accepted."""
    expected = _row_path(values, delimiter)
    batch = _columnar(values, delimiter)
    if batch is None:
        return False
    assert not any(isinstance(e, Exception) for e in expected)
    got = _rows_of(batch)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert all(_same(x, y) for x, y in zip(g, e, strict=True)), (g, e)
    return True


BENCH_LINE = (
    b'1,"2013-09-01T00:00:38Z","Karl",38,-1.362867,0.017562,"0"',
    b'2,"2013-09-01T00:00:39Z","Jos\xc3\xa9",-39,.5,-0.0,',
)


def test_quoted_fields_and_nulls_decode_like_the_row_path() -> None:
    values: list[bytes | None] = [
        b'1,"Karl",38,-1.362867,0.017562,"0"',
        b'2,"Jos\xc3\xa9",-39,.5,-0.0,',
        b',,,,,""',
        b'9223372036854775,x,2147483647,5.,123456789012345678901.5,"1"',
    ]
    assert _assert_matches_row_path(values)
    batch = _columnar(values)
    assert batch is not None
    assert batch.column_values(5) == ["0", None, None, "1"]
    assert batch.column_values(1) == ["Karl", "José", None, "x"]
    assert struct.pack("<d", batch.column_values(4)[1]) == struct.pack("<d", -0.0)


def test_custom_delimiter() -> None:
    values: list[bytes | None] = [b'1|a,b|3|1.5|2|"x"', b"2|c|4||-7|y"]
    assert _assert_matches_row_path(values, "|")


def test_fast_path_declines_what_it_cannot_decode_exactly() -> None:
    good = b'1,"a",2,1.5,2.5,"0"'
    for bad in (
        b'1,"a,b",2,1.5,2.5,"0"',  # delimiter inside quotes
        b'1,"a""b",2,1.5,2.5,"0"',  # escaped quote
        b'1,a"b,2,1.5,2.5,"0"',  # stray quote
        b"1,a,2,1.5x,2.5,0",  # malformed double
        b"1,a,2,1e5,2.5,0",  # valid, but outside the strict number form
        b"1,a,2, 1.5,2.5,0",  # whitespace
        b"1,a,2.0,1.5,2.5,0",  # INT with a fraction
        b"1,a,2147483648,1.5,2.5,0",  # INT out of range
        b"1,a,2,1.5,2.5",  # too few fields
        b"1,a,2,1.5,2.5,0,7",  # too many fields
        b"1,a\nb,2,1.5,2.5,0",  # newline
        b"1,\xff,2,1.5,2.5,0",  # not UTF-8
        b"-,a,2,1.5,2.5,0",  # a sign without digits
        b"1,a,2,.,2.5,0",  # a dot without digits
        b"1,a,2,1.2.3,2.5,0",  # two dots
        b"1,a,2,1-2,2.5,0",  # an inner minus
        None,  # tombstone
    ):
        assert _columnar([good, bad, good]) is None, bad
        _assert_matches_row_path([good, bad, good])
    assert _columnar([good, good]) is not None


def test_unsupported_column_types_have_no_fast_path() -> None:
    assert delimited_columns_decoder([T.BOOLEAN, T.STRING], ",") is None
    assert delimited_columns_decoder([T.STRING], '"') is None


number_text = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
    st.tuples(st.integers(0, 8), st.floats(-1e6, 1e6)).map(lambda t: f"{t[1]:.{t[0]}f}"),
    st.sampled_from(["", "-0", "-0.0", "0.", ".5", "-.5", "5.", "1e3", " 7", "+1", "1_0", "nan"]),
)
string_text = st.one_of(
    st.text(st.sampled_from('ab é"\\, x'), max_size=6),
    st.text(max_size=4).map(lambda s: f'"{s}"'),
)


@st.composite
def delimited_lines(draw: st.DrawFn) -> bytes:
    fields = [
        draw(number_text),
        draw(string_text),
        draw(number_text),
        draw(number_text),
        draw(number_text),
        draw(string_text),
    ]
    return ",".join(fields).encode("utf-8", "surrogatepass")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(delimited_lines(), min_size=1, max_size=6))
def test_fast_decoding_equals_the_row_path(lines: list[bytes]) -> None:
    _assert_matches_row_path(list(lines))


# ----------------------------------------------------------------------------- AVRO

AVRO_COLUMNS = [
    ("ID", T.BIGINT),
    ("S", T.STRING),
    ("N", T.INTEGER),
    ("A", T.DOUBLE),
    ("B", T.DOUBLE),
    ("C", T.STRING),
]


def _fastavro_records(rows: list[tuple[Any, ...]], schema_id: int) -> list[bytes]:
    parsed = fastavro.parse_schema(sink_schema(AVRO_COLUMNS, True))
    names = [n for n, _ in AVRO_COLUMNS]
    out = []
    for row in rows:
        buf = io.BytesIO()
        buf.write(header_of(schema_id))
        fastavro.schemaless_writer(buf, parsed, dict(zip(names, row, strict=True)))
        out.append(buf.getvalue())
    return out


avro_rows = st.lists(
    st.tuples(
        st.none() | st.integers(-(2**63), 2**63 - 1),
        st.none() | st.text(max_size=80),
        st.none() | st.integers(-(2**31), 2**31 - 1),
        st.none() | st.floats(width=64),
        st.none() | st.floats(width=64),
        st.none() | st.text(max_size=3),
    ),
    min_size=1,
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(avro_rows, st.integers(0, 2**31 - 1))
def test_batch_avro_encoding_is_byte_identical_to_fastavro(
    rows: list[tuple[Any, ...]], schema_id: int
) -> None:
    batch = columns_from_rows(rows, [t for _, t in AVRO_COLUMNS])
    header = header_of(schema_id)
    assert encode_avro(batch, range(len(AVRO_COLUMNS)), header) == _fastavro_records(
        rows, schema_id
    )


def test_batch_avro_encoding_of_a_projection_and_long_strings() -> None:
    rows: list[tuple[Any, ...]] = [
        (1, "x" * 300, 7, 1.5, None, "é"),
        (None, None, None, -0.0, 2.0, None),
    ]
    batch = columns_from_rows(rows, [t for _, t in AVRO_COLUMNS])
    header = header_of(3)
    got = encode_avro(batch, [0, 1, 2, 3, 4, 5], header)
    assert got == _fastavro_records(rows, 3)
    assert encode_avro(batch.take(~batch.columns[0].present), range(6), header) == got[1:]


# ----------------------------------------------------------------------------- runtime

SOURCE_COLUMNS = [
    ("ID", T.BIGINT),
    ("USER", T.STRING),
    ("TIME", T.INTEGER),
    ("V1", T.DOUBLE),
    ("V2", T.DOUBLE),
    ("CLASS", T.STRING),
]


class _Registry:
    def register_schema(self, subject: str, schema: Any) -> int:
        return 42


class _Message:
    def __init__(self, value: bytes | None, offset: int, key: bytes | None = None) -> None:
        self._value, self._offset, self._key = value, offset, key

    def error(self) -> None:
        return None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000 + self._offset)

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def topic(self) -> str:
        return "src"


def _processor(
    select: str, logged: list[bytes], key_columns: list[Any] | None = None
) -> BatchProcessor:
    metastore = MetaStore()
    source = DataSource(
        "SRC",
        "STREAM",
        "src",
        key_columns or [],
        SOURCE_COLUMNS,
        FormatInfo("KAFKA"),
        FormatInfo("DELIMITED"),
        "",
    )
    metastore.put(source)
    stmt = parse(
        f"CREATE STREAM SNK WITH (KAFKA_TOPIC='snk', VALUE_FORMAT='AVRO') AS {select} EMIT CHANGES;"
    )
    plan = plan_select(stmt.query, metastore, persistent=True, sink_name="SNK")  # type: ignore[attr-defined]
    sink = DataSource(
        "SNK",
        "STREAM",
        "snk",
        plan.key_columns,
        plan.value_columns,
        FormatInfo("KAFKA"),
        FormatInfo("AVRO"),
        "",
    )
    plog = ProcessingLog(lambda _topic, entry: logged.append(entry), "plog")
    return BatchProcessor("Q", plan, sink, _Registry(), plog, "snk")


def _as_messages(fakes: list[_Message]) -> list[Message]:
    """The fakes stand in for consumed Messages: they have every method the processor reads."""
    return cast(list[Message], fakes)


def _row_output(
    proc: BatchProcessor, messages: list[_Message]
) -> list[tuple[bytes | None, int, bytes | None]]:
    out = proc.serialize(proc.evaluate(proc.rows(_as_messages(messages))))
    return [(r.value, r.timestamp, r.key) for r in out]


def _columnar_output(
    proc: BatchProcessor, messages: list[_Message]
) -> list[tuple[bytes | None, int, bytes | None]]:
    values, timestamps, keys = proc.columnar_batch(_as_messages(messages)) or ([], [], [])
    return list(zip(values, timestamps, keys, strict=True))


LINES = [
    b'1,"Karl",38,-1.362867,0.017562,"0"',
    b'2,"Ann",39,1.0,,',
    b'3,,40,2.5,-3.25,"1"',
    b',"Bo",,,,"0"',
]


def test_preprocessing_query_takes_the_column_wise_path_with_the_row_paths_bytes() -> None:
    logged: list[bytes] = []
    proc = _processor("SELECT * FROM SRC WHERE Class IS NOT NULL", logged)
    assert proc.columnar is not None
    messages = [_Message(v, i) for i, v in enumerate(LINES)]
    out = _columnar_output(proc, messages)
    assert out == _row_output(proc, messages)
    assert len(out) == 3 and not logged


def test_a_kafka_string_key_passes_through_the_column_wise_path() -> None:
    """The pipeline's statements keep the transaction Id as a KAFKA STRING key (ID_KEY)."""
    logged: list[bytes] = []
    proc = _processor(
        "SELECT ID_KEY, ID, V1, CLASS FROM SRC WHERE Class IS NOT NULL",
        logged,
        key_columns=[("ID_KEY", T.STRING)],
    )
    assert proc.columnar is not None
    keys = [b"1", b"2", None, "\u00e9".encode()]
    messages = [_Message(v, i, k) for i, (v, k) in enumerate(zip(LINES, keys, strict=True))]
    out = _columnar_output(proc, messages)
    assert out == _row_output(proc, messages)
    assert [key for _v, _t, key in out] == [b"1", None, "\u00e9".encode()]  # line 2: no Class
    assert not logged


def test_a_key_that_is_not_utf8_sends_its_batch_down_the_row_path() -> None:
    proc = _processor("SELECT ID_KEY, ID FROM SRC", [], key_columns=[("ID_KEY", T.STRING)])
    assert proc.columnar is not None
    assert proc.columnar_batch(_as_messages([_Message(LINES[0], 0, b"\xff\xfe")])) is None


def test_a_computed_or_non_string_key_keeps_the_row_path() -> None:
    string_key = [("ID_KEY", T.STRING)]
    assert (
        _processor("SELECT ID AS ID_KEY, V1 FROM SRC PARTITION BY ID", [], string_key).columnar
        is None
    )
    assert _processor("SELECT K, V1 FROM SRC", [], [("K", T.BIGINT)]).columnar is None


def test_is_null_filter_and_projection_take_the_column_wise_path() -> None:
    proc = _processor("SELECT CLASS, V2, ID FROM SRC WHERE CLASS IS NULL", [])
    assert proc.columnar is not None
    messages = [_Message(v, i) for i, v in enumerate(LINES)]
    out = _columnar_output(proc, messages)
    assert out == _row_output(proc, messages)
    assert len(out) == 1


def test_other_shapes_keep_the_row_path() -> None:
    for select in (
        "SELECT ID + 1 AS X FROM SRC",
        "SELECT * FROM SRC WHERE ID > 1",
        "SELECT ROWTIME AS RT, ID FROM SRC",
        "SELECT * FROM SRC PARTITION BY ID",
    ):
        assert _processor(select, []).columnar is None, select


def test_a_malformed_record_sends_its_batch_down_the_row_path_and_to_the_log() -> None:
    logged: list[bytes] = []
    proc = _processor("SELECT * FROM SRC WHERE Class IS NOT NULL", logged)
    messages = [_Message(v, i) for i, v in enumerate([*LINES, b"4,x,41,oops,1.0,0"])]
    assert proc.columnar_batch(_as_messages(messages)) is None
    out = _row_output(proc, messages)
    assert len(out) == 3
    assert len(logged) == 1 and b"Failed to deserialise a field" in logged[0]
    assert json.loads(logged[0])["code"] == "deserialize_value"
    refused = _row_path([b"4,x,41,oops,1.0,0"])[0]
    assert isinstance(refused, SerdeError) and isinstance(refused, RecordRejected)


plain_string = st.text(
    st.characters(blacklist_characters='",\n\r', blacklist_categories=["Cs"]), max_size=8
)
strict_double = st.one_of(
    st.just(""),
    st.tuples(st.integers(0, 17), st.floats(-1e12, 1e12)).map(lambda t: f"{t[1]:.{t[0]}f}"),
    st.integers(-(10**17), 10**17).map(str),
    st.tuples(st.integers(0, 10**9), st.integers(0, 10**9)).map(lambda t: f"-{t[0]}.{t[1]:09d}"),
)


@st.composite
def strict_lines(draw: st.DrawFn) -> bytes:
    def maybe_quoted(text: str) -> str:
        return f'"{text}"' if draw(st.booleans()) else text

    fields = [
        draw(st.just("") | st.integers(-(10**17), 10**17).map(str)),
        maybe_quoted(draw(plain_string)),
        draw(st.just("") | st.integers(-(2**31), 2**31 - 1).map(str)),
        maybe_quoted(draw(strict_double)),
        draw(strict_double),
        maybe_quoted(draw(plain_string)),
    ]
    return ",".join(fields).encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(strict_lines(), min_size=1, max_size=8))
def test_fast_decoding_accepts_the_strict_form_and_equals_the_row_path(lines: list[bytes]) -> None:
    assert _assert_matches_row_path(list(lines))


def test_warm_up_loads_both_kernels_before_any_query() -> None:
    """The server calls warm_up at start-up so the first batch does not pay for compiling."""
    from services.common.avro.kernels import encode_records
    from services.ksql_server.formats import columnar

    columnar.warm_up()
    assert columnar._split_and_parse.signatures
    assert encode_records.signatures
