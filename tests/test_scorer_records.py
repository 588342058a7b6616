"""The scorer's alert records encoded column-wise, byte for byte as make_alert + fastavro."""

from __future__ import annotations

import io

import fastavro
import numpy as np
from test_avro_decoder import frame
from test_scorer_support import input_schema, make_records

from services.common.avro.decoder import decode_columns
from services.common.avro.schemas import parse_schema, plan_schema
from services.common.avro.wire import header_of


def test_batch_alert_encoding_is_byte_identical_to_make_alert_and_fastavro() -> None:
    from services.scorer.records import alert_schema, encode_alerts, make_alert

    schema = input_schema()
    records = make_records(200, seed=5)
    for i, rec in enumerate(records):
        if i % 5 == 0:
            rec["USER"] = None
        if i % 7 == 0:
            rec["TIMESTAMP"] = "zeit ⏱ " * (i % 30)
        if i % 9 == 0:
            rec["CLASS"] = None
        if i % 11 == 0:
            rec["ID"] = -(2**40) - i
    bodies = [frame(schema, r)[5:] for r in records]
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns(bodies, plans)
    rows = np.arange(0, 200, 3)
    scores = np.linspace(0.1, 9.9, len(rows)).astype(np.float32)
    header = header_of(42)
    got = encode_alerts(batch, rows, scores, 0.25, "20261126-abc", 1_795_000_000_123, header)
    assert got is not None
    parsed = parse_schema(alert_schema())
    for row, score, value in zip(rows, scores, got, strict=True):
        rec = records[row]
        alert = make_alert(
            rec, rec["AMOUNT"], float(score), 0.25, "20261126-abc", 1_795_000_000_123
        )
        buf = io.BytesIO()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, alert)
        assert value == buf.getvalue(), row


def test_batch_alert_encoding_declines_inputs_of_other_types() -> None:
    from services.scorer.records import encode_alerts

    schema = input_schema()
    for field in schema["fields"]:
        if field["name"] == "ID":
            field["type"] = ["null", "string"]
    records = make_records(3)
    for rec in records:
        rec["ID"] = str(rec["ID"])
    plans = plan_schema(schema)
    assert plans is not None
    batch = decode_columns([frame(schema, r)[5:] for r in records], plans)
    assert encode_alerts(batch, np.arange(3), np.ones(3), 0.5, "v", 0, header_of(1)) is None
