"""DDL rules: a `CREATE`'s WITH clause checked and turned into a `DataSource`, Kafka-free.

Kept out of the Engine so the way a statement travels stays visible (parse → plan → compile →
run → serve): these functions only read the statement, the session properties and (for a CSAS)
the plan; they create no topic and read no registry. Where a source's columns come from the
Schema Registry, the caller passes the lookup in (`ColumnInference`), so tables, windows and
new formats change this module and not the engine's dispatch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

from services.ksql_server import entities as E
from services.ksql_server.errors import KsqlError, LocatedError, UnsupportedError
from services.ksql_server.formats import validate_format
from services.ksql_server.formats.factory import infer_columns
from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.formats.registry import INFERRING_FORMATS, schema_properties
from services.ksql_server.formats.windowed import window_from_properties
from services.ksql_server.metastore import DataSource
from services.ksql_server.parser import ast as A
from services.ksql_server.planner.plan import QueryPlan
from services.ksql_server.types import ColumnDef

SOURCE_PROPS = {
    "KAFKA_TOPIC",
    "VALUE_FORMAT",
    "KEY_FORMAT",
    "FORMAT",
    "PARTITIONS",
    "REPLICAS",
    "VALUE_DELIMITER",
    "KEY_DELIMITER",
    "TIMESTAMP",
    "TIMESTAMP_FORMAT",
    "WRAP_SINGLE_VALUE",
    "VALUE_AVRO_SCHEMA_FULL_NAME",
    "KEY_SCHEMA_ID",
    "VALUE_SCHEMA_ID",
    "WINDOW_TYPE",
    "WINDOW_SIZE",
    "RETENTION_MS",
    "KEY_SCHEMA_FULL_NAME",
    "VALUE_SCHEMA_FULL_NAME",
    "KEY_PROTOBUF_NULLABLE_REPRESENTATION",
    "VALUE_PROTOBUF_NULLABLE_REPRESENTATION",
}
RESERVED_COLUMNS = {"ROWTIME", "ROWPARTITION", "ROWOFFSET", "WINDOWSTART", "WINDOWEND"}

ColumnInference = Callable[
    [FormatInfo, str, bool, MutableMapping[str, Any]], list[ColumnDef] | None
]
"""(format, logical topic, is_key, WITH properties) → the columns its registered schema has
(None for a key without one); `formats.factory.infer_columns` bound to a registry."""


def build_source(
    stmt: A.CreateSource, text: str, props: Mapping[str, Any], infer: ColumnInference
) -> DataSource:
    """The source a `CREATE STREAM/TABLE` (without AS SELECT) declares, its WITH clause checked;
    `partitions` is left for the caller, who knows the topic."""
    wp = dict(stmt.props)
    check_props(wp)
    apply_defaults(wp, props)
    if "KAFKA_TOPIC" not in wp:
        raise KsqlError('Missing required property "KAFKA_TOPIC" which has no default value.')
    key_fmt, value_fmt = source_formats(wp, None)
    if value_fmt is None:
        raise KsqlError(
            "Statement is missing the 'VALUE_FORMAT' property from the WITH clause. Either "
            "provide one or set a default via the 'ksql.persistence.default.format.value' "
            "config."
        )
    key_fmt = key_fmt or "KAFKA"
    window = window_from_properties(wp)
    format_info(key_fmt, wp, "KEY")
    format_info(value_fmt.name, wp, "VALUE")
    columns = stmt.columns
    topic = str(wp["KAFKA_TOPIC"])
    if columns is None or not columns:
        if value_fmt.name not in INFERRING_FORMATS or columns is not None:
            if value_fmt.name not in INFERRING_FORMATS:  # VALUE_SCHEMA_ID's error first
                infer_columns(format_info(value_fmt.name, wp, "VALUE"), None, topic, False)
            raise KsqlError("No columns supplied.")
        value_cols = infer(format_info(value_fmt.name, wp, "VALUE"), topic, False, wp) or []
        if value_cols and value_cols[0][0] == "ROWVAL" and len(value_cols) == 1:
            wp["_WRAP_DEFAULT"] = False
        key_cols: list[ColumnDef] = []
    else:
        key_cols = [(c.name, c.type) for c in columns if c.key]
        value_cols = [(c.name, c.type) for c in columns if not c.key and not c.headers]
        if any(c.headers for c in columns):
            raise UnsupportedError("HEADER columns")
        for which, declared in (("KEY", key_cols), ("VALUE", value_cols)):
            if declared and f"{which}_SCHEMA_ID" in wp:
                raise KsqlError(
                    f"Table elements and {which}_SCHEMA_ID cannot both exist for create statement."
                )
        if not value_cols and value_fmt.name in INFERRING_FORMATS:
            # only key columns declared: the value columns come from the registry
            value_cols = infer(format_info(value_fmt.name, wp, "VALUE"), topic, False, wp) or []
        if stmt.kind == "STREAM" and any(c.primary for c in columns):
            primary = next(c for c in columns if c.primary)
            raise LocatedError(
                f"Column `{primary.name}` is a 'PRIMARY KEY' "
                "column: please use 'KEY' for streams.\nTables have PRIMARY KEYs, which are "
                "unique and NON NULL.\nStreams have KEYs, which have no uniqueness or NON NULL "
                "constraints.",
                primary.pos,
            )
        seen: set[str] = set()
        for c in columns:
            if c.name in RESERVED_COLUMNS:
                raise KsqlError(
                    f"'{c.name}' is a reserved column name. You cannot use it as a name for a "
                    "column."
                    if c.name in ("ROWTIME", "ROWPARTITION", "ROWOFFSET")
                    else f"'{c.name}' is a reserved column name."
                )
            if c.name in seen:
                raise KsqlError(f"Duplicate column names: {c.name}")
            seen.add(c.name)
    if not key_cols:
        key_cols = infer(format_info(key_fmt, wp, "KEY"), topic, True, wp) or []
    key_format = format_info(key_fmt, wp, "KEY")
    value_format = format_info(value_fmt.name, wp, "VALUE")
    if not key_cols:
        key_format = (
            FormatInfo("NONE") if "KEY_FORMAT" not in wp and "FORMAT" not in wp else key_format
        )
    check_wrapping(value_format, value_cols, wp)
    validate_format(key_format, key_cols, True) if key_cols else None
    validate_format(value_format, value_cols, False)
    if key_format.name == "NONE" and key_cols:
        raise KsqlError("Key format NONE does not support key columns")
    if window is not None and not key_cols:
        raise KsqlError("Windowed sources require a key column.")
    ts_col = None
    if "TIMESTAMP" in wp:
        ts_col = (
            str(wp["TIMESTAMP"]).upper()
            if not str(wp["TIMESTAMP"]).startswith("`")
            else str(wp["TIMESTAMP"]).strip("`")
        )
        typ = dict(key_cols + value_cols).get(ts_col)
        if typ is None:
            raise KsqlError(
                f"The TIMESTAMP column set in the WITH clause does not exist in the schema: "
                f"'{ts_col}'"
            )
        if typ.base not in ("BIGINT", "TIMESTAMP", "STRING"):
            raise KsqlError(
                f"Timestamp column, `{ts_col}`, should be LONG(INT64), TIMESTAMP, or a "
                "String with a timestamp_format specified."
            )
        if typ.base == "STRING" and "TIMESTAMP_FORMAT" not in wp:
            raise KsqlError(
                "A String timestamp field has been specified without also specifying the "
                "TIMESTAMP_FORMAT property."
            )
    return DataSource(
        name=stmt.name,
        kind=stmt.kind,
        topic=str(wp["KAFKA_TOPIC"]),
        key_columns=key_cols,
        value_columns=value_cols,
        key_format=key_format,
        value_format=value_format,
        sql=text,
        timestamp_column=ts_col,
        timestamp_format=wp.get("TIMESTAMP_FORMAT"),
        replicas=int(wp.get("REPLICAS", 1)),
        is_source=stmt.source_only,
        window=window,
    )


def build_sink(
    stmt: A.CreateSource, plan: QueryPlan, text: str, props: Mapping[str, Any]
) -> DataSource:
    """The sink of a `CREATE ... AS SELECT`: formats from its WITH clause, else the source's."""
    wp = dict(stmt.props)
    source = plan.source
    key_name, value_info = source_formats(wp, source)
    assert value_info is not None
    key_name = key_name or source.key_format.name
    if key_name == "NONE" and plan.key_columns:  # a key-less source gets a key: the default
        key_name = str(props.get("ksql.persistence.default.format.key") or "KAFKA").upper()
    if not plan.key_columns:
        if "KEY_FORMAT" in wp and plan.keyless_partition:
            raise KsqlError("Key format specified for stream without key columns.")
        if "KEY_FORMAT" not in wp and "FORMAT" not in wp:
            key_name = "NONE"
    key_format = format_info(key_name, wp, "KEY")
    if "KEY_DELIMITER" not in wp and key_name == source.key_format.name == "DELIMITED":
        key_format.delimiter = source.key_format.delimiter
    value_format = format_info(value_info.name, wp, "VALUE")
    if "VALUE_DELIMITER" not in wp and value_info.name == source.value_format.name == "DELIMITED":
        value_format.delimiter = source.value_format.delimiter
    if "WRAP_SINGLE_VALUE" not in wp:
        value_format.wrap_single = default_wrap(props)
    check_wrapping(value_format, plan.value_columns, wp)
    if plan.key_columns:
        validate_format(key_format, plan.key_columns, True)
    validate_format(value_format, plan.value_columns, False)
    ts_col = None
    if "TIMESTAMP" in wp:
        ts_col = str(wp["TIMESTAMP"]).upper()
        names = dict(plan.output)
        if ts_col not in names:
            raise KsqlError(
                f"The TIMESTAMP column set in the WITH clause does not exist in the schema: "
                f"'{ts_col}'"
            )
    return DataSource(
        name=stmt.name,
        kind=stmt.kind,
        topic=str(
            wp.get("KAFKA_TOPIC") or (props.get("ksql.output.topic.name.prefix") or "") + stmt.name
        ),
        key_columns=plan.key_columns,
        value_columns=plan.value_columns,
        key_format=key_format,
        value_format=value_format,
        sql=text,
        timestamp_column=ts_col,
        timestamp_format=wp.get("TIMESTAMP_FORMAT"),
        replicas=int(wp.get("REPLICAS", 1)),
    )


def check_props(wp: Mapping[str, Any]) -> None:
    unknown = [k for k in wp if k not in SOURCE_PROPS and not k.startswith("_")]
    if unknown:
        raise KsqlError(f"Invalid config variable(s) in the WITH clause: {','.join(unknown)}")
    if "FORMAT" in wp and ("KEY_FORMAT" in wp or "VALUE_FORMAT" in wp):
        raise KsqlError(
            "Cannot supply both 'KEY_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both key "
            "and value formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
            if "KEY_FORMAT" in wp
            else "Cannot supply both 'VALUE_FORMAT' and 'FORMAT' properties, as 'FORMAT' sets both "
            "key "
            "and value formats. Either use just 'FORMAT', or use 'KEY_FORMAT' and 'VALUE_FORMAT'."
        )


def apply_defaults(wp: dict[str, Any], props: Mapping[str, Any]) -> None:
    """Server-wide default formats (`ksql.persistence.default.format.*`) for CREATE."""
    if "FORMAT" not in wp:
        if "VALUE_FORMAT" not in wp and props.get("ksql.persistence.default.format.value"):
            wp["VALUE_FORMAT"] = props["ksql.persistence.default.format.value"]
        if "KEY_FORMAT" not in wp and props.get("ksql.persistence.default.format.key"):
            wp["KEY_FORMAT"] = props["ksql.persistence.default.format.key"]
    if "WRAP_SINGLE_VALUE" not in wp and default_wrap(props) is False:
        wp["_WRAP_DEFAULT"] = False


def new_planner(props: Mapping[str, Any]) -> bool:
    return str(props.get("ksql.new.query.planner.enabled", "false")).lower() == "true"


def default_wrap(props: Mapping[str, Any]) -> bool | None:
    v = props.get("ksql.persistence.wrap.single.values")
    if v is None:
        return None
    return str(v).lower() == "true"


def check_sink_timestamp(wp: Mapping[str, Any], output: list[ColumnDef]) -> None:
    ts_col = str(wp["TIMESTAMP"]).upper()
    typ = dict(output).get(ts_col)
    if typ is None:
        raise KsqlError(
            f"The TIMESTAMP column set in the WITH clause does not exist in the schema: '{ts_col}'"
        )
    if typ.base not in ("BIGINT", "TIMESTAMP") and not (
        typ.base == "STRING" and "TIMESTAMP_FORMAT" in wp
    ):
        raise KsqlError(
            f"Timestamp column, `{ts_col}`, should be LONG(INT64), TIMESTAMP, or a String with a "
            "timestamp_format specified."
        )


def source_formats(
    wp: Mapping[str, Any], source: DataSource | None
) -> tuple[str | None, FormatInfo | None]:
    from services.ksql_server.formats.base import KNOWN

    for k in ("KEY_FORMAT", "VALUE_FORMAT", "FORMAT"):
        if k in wp and str(wp[k]).upper() not in KNOWN:
            raise KsqlError(f"Unknown format: {str(wp[k]).upper()}")
    key = wp.get("KEY_FORMAT") or wp.get("FORMAT")
    value = wp.get("VALUE_FORMAT") or wp.get("FORMAT")
    key_name = str(key).upper() if key else None
    if value:
        return key_name, FormatInfo(str(value).upper())
    if source is not None:
        return key_name, FormatInfo(
            source.value_format.name, source.value_format.delimiter, source.value_format.wrap_single
        )
    return key_name, None


def parse_delimiter(raw: Any, which: str) -> str:
    text = str(raw)
    special = {"TAB": "\t", "SPACE": " "}
    if text.upper() in special:
        return special[text.upper()]
    prefix = f"Failed to prepare statement: Configuration {which}_DELIMITER is invalid: "
    if text.strip() == "" or text in ("\t", " "):
        raise KsqlError(
            prefix + "Delimiter cannot be empty, if you meant to have a tab or space for "
            "delimiter, please use the special values 'TAB' or 'SPACE'\nExample valid value: ';'"
        )
    if len(text) != 1:
        raise KsqlError(
            prefix + f"Invalid delimiter value: '{text}'. Delimiter must be a single character "
            "or TAB,SPACE\nExample valid value: ';'"
        )
    return text


def format_info(name: str, wp: Mapping[str, Any], which: str) -> FormatInfo:
    fmt = FormatInfo(name.upper())
    delim = wp.get(f"{which}_DELIMITER")
    if delim is not None:
        if fmt.name != "DELIMITED":
            raise KsqlError(f"{fmt.name} does not support the following configs: [delimiter]")
        fmt.delimiter = parse_delimiter(delim, which)
    if which == "VALUE":
        if "_WRAP_DEFAULT" in wp:
            fmt.wrap_single = False
        if "WRAP_SINGLE_VALUE" in wp:
            fmt.wrap_single = bool(wp["WRAP_SINGLE_VALUE"])
        if "VALUE_AVRO_SCHEMA_FULL_NAME" in wp:
            fmt.schema_name = str(wp["VALUE_AVRO_SCHEMA_FULL_NAME"])
            if fmt.name != "AVRO":
                raise KsqlError(
                    f"{fmt.name} does not support the following configs: [fullSchemaName]"
                )
            if not fmt.schema_name.strip():
                raise KsqlError(
                    "fullSchemaName cannot be empty. Format configuration: {fullSchemaName=}"
                )
        elif "VALUE_SCHEMA_FULL_NAME" in wp:
            fmt.schema_name = str(wp["VALUE_SCHEMA_FULL_NAME"])
    elif "KEY_SCHEMA_FULL_NAME" in wp:
        fmt.schema_name = str(wp["KEY_SCHEMA_FULL_NAME"])
    schema_properties(fmt, wp, which)
    return fmt


def check_wrapping(fmt: FormatInfo, value_cols: list[ColumnDef], wp: Mapping[str, Any]) -> None:
    if "WRAP_SINGLE_VALUE" not in wp:
        return
    if fmt.name == "DELIMITED" and fmt.wrap_single:
        raise KsqlError("Format 'DELIMITED' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
    if fmt.name == "KAFKA" and fmt.wrap_single:
        raise KsqlError("Format 'KAFKA' does not support 'WRAP_SINGLE_VALUE' set to 'true'.")
    if len(value_cols) != 1:
        raise KsqlError("'WRAP_SINGLE_VALUE' is only valid for single-field value schemas")


def missing_topic(stmt: A.CreateSource, topic: str) -> KsqlError:
    """A CREATE over a topic that does not exist, without PARTITIONS to create it."""
    kind = stmt.kind
    return KsqlError(
        f"Topic '{topic}' does not exist. If you want to create a new topic for "
        f"the {kind.lower()} please re-run the statement providing the required "
        "'PARTITIONS' configuration in the WITH clause (and optionally 'REPLICAS'). "
        f"For example: CREATE {kind} {stmt.name} (ID INT) WITH (KAFKA_TOPIC="
        f"'{topic}', PARTITIONS=2, REPLICAS=1, FORMAT='JSON');"
    )


def partitions_differ(topic: str, wanted: Any, partitions: int) -> KsqlError:
    """A CREATE whose PARTITIONS differs from the existing topic's count."""
    return KsqlError(
        f"A Kafka topic with the name '{topic}' already exists, with different "
        "partition/replica configuration than required. KSQL expects "
        f"{wanted} "
        f"partitions (topic has {partitions}), 1 replication factor (topic has 1)."
    )


def check_insert_schema(plan: QueryPlan, target: DataSource) -> None:
    """`INSERT INTO target SELECT ...`: the query's columns must be the sink's."""
    if plan.key_columns != target.key_columns or plan.value_columns != target.value_columns:
        raise KsqlError(
            "Incompatible schema between results and sink.\n"
            f"Result schema is {schema_text(plan.key_columns, plan.value_columns)}\n"
            f"Sink schema is {schema_text(target.key_columns, target.value_columns)}"
        )


def still_used(name: str, readers: list[str], writers: list[str]) -> KsqlError:
    """DROP of a source that running queries read or write (other than its own CSAS)."""
    return KsqlError(
        f"Cannot drop {name}.\n"
        f"The following queries read from this source: [{', '.join(sorted(readers))}].\n"
        f"The following queries write into this source: "
        f"[{', '.join(sorted(writers))}].\n"
        "You need to terminate them before dropping " + name + "."
    )


def schema_text(keys: list[ColumnDef], values: list[ColumnDef]) -> str:
    parts = [f"`{n}` {t} KEY" for n, t in keys] + [f"`{n}` {t}" for n, t in values]
    return ", ".join(parts)


def already_exists(stmt: A.CreateSource, text: str, command_id: str, seq: int) -> dict[str, Any]:
    """CREATE of a name that exists: a no-op status with IF NOT EXISTS, else an error."""
    if stmt.if_not_exists:
        return E.current_status(
            text,
            command_id,
            f"Cannot add stream '{stmt.name}': A stream with the same name already exists",
            seq,
        )
    kind = stmt.kind.lower()
    raise KsqlError(f"Cannot add {kind} '{stmt.name}': A {kind} with the same name already exists")
