"""The scorer's alert records encoded column-wise, byte for byte as make_alert + fastavro."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
from test_avro_decoder import frame
from test_scorer_support import input_schema, make_records

from services.common.avro.decoder import decode_columns
from services.common.avro.schemas import ksql_record_schema, parse_schema, plan_schema
from services.common.avro.wire import header_of
from services.common.topics import AVRO_FEATURE_FIELDS
from services.model_registry.feature_stats import FeatureStats
from services.scorer.records import explain


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
    parsed = parse_schema(alert_schema())
    rng = np.random.default_rng(3)
    parts = rng.exponential(size=(len(rows), 30))
    stats = FeatureStats.fit(rng.normal(size=(300, 30)))
    explained = {
        "none": None,
        "ranges": explain(parts, rng.normal(size=(len(rows), 30)), stats),
        "no ranges": explain(parts, rng.normal(size=(len(rows), 30)), None),
    }
    for case, explanations in explained.items():
        got = encode_alerts(
            batch, rows, scores, 0.25, "20261126-abc", 1_795_000_000_123, header, explanations
        )
        assert got is not None
        for i, (row, score, value) in enumerate(zip(rows, scores, got, strict=True)):
            rec = records[row]
            alert = make_alert(
                rec,
                rec["AMOUNT"],
                float(score),
                0.25,
                "20261126-abc",
                1_795_000_000_123,
                None if explanations is None else explanations.record(i),
            )
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, parsed, alert)
            assert value == buf.getvalue(), (case, row)
            back = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)
            assert back["EXPLANATION"] == alert["EXPLANATION"]


def test_explain_ranks_the_features_by_share_of_the_squared_error() -> None:
    from services.scorer.records import explain

    rng = np.random.default_rng(0)
    parts = rng.exponential(size=(50, 30)).astype(np.float32)
    parts[0] = 0.0  # a perfect reconstruction: no share anywhere, nothing divided by zero
    features = rng.normal(size=(50, 30))
    features[:, 0] = 90_000.0  # TIME: shown as the hour of day (1 h past a day)
    stats = FeatureStats.fit(rng.normal(size=(400, 30)))
    got = explain(parts, features, stats)
    share = parts / parts.sum(axis=1, keepdims=True).clip(1e-300)
    for i in range(1, 50):
        order = sorted(range(30), key=lambda f: (-share[i, f], f))[:5]
        assert got.features[i].tolist() == order
        assert np.allclose(got.shares[i], share[i, order])
        expected = [1.0 if f == 0 else features[i, f] for f in order]
        assert np.allclose(got.values[i], expected)
    assert got.shares[0].tolist() == [0.0] * 5
    record = got.record(3)
    assert [r["FEATURE"] for r in record] == [AVRO_FEATURE_FIELDS[f] for f in got.features[3]]
    assert record[0]["NORMAL_LOW"] == stats.low[got.features[3, 0]]


def test_alert_schema_evolution_is_backward_and_forward_compatible() -> None:
    from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
    from avro.schema import parse

    from services.scorer.records import ALERT_FIELDS, alert_schema, make_alert

    new = alert_schema()
    old = ksql_record_schema(list(ALERT_FIELDS))
    checker = ReaderWriterCompatibilityChecker()
    for reader, writer in ((new, old), (old, new)):
        result = checker.get_compatibility(parse(json.dumps(reader)), parse(json.dumps(writer)))
        assert result.compatibility is SchemaCompatibilityType.compatible
    # an old reader skips the explanation; a new reader of an old alert sees null
    rec = make_records(1)[0]
    alert = make_alert(rec, 1.0, 2.0, 1.5, "v", 0, [{"FEATURE": "V1", "SHARE": 1.0,
                       "VALUE": 3.0, "NORMAL_LOW": None, "NORMAL_HIGH": None}])  # fmt: skip
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_schema(new), alert)
    as_old = fastavro.schemaless_reader(
        io.BytesIO(buf.getvalue()), parse_schema(new), parse_schema(old)
    )
    assert as_old == {k: v for k, v in alert.items() if k != "EXPLANATION"}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parse_schema(old), as_old)
    as_new = fastavro.schemaless_reader(
        io.BytesIO(buf.getvalue()), parse_schema(old), parse_schema(new)
    )
    assert as_new == {**as_old, "EXPLANATION": None}


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
