"""The feedback record (fraud_feedback) and the training data's feature statistics (PSI)."""

from __future__ import annotations

import io
import json

import fastavro
import numpy as np
import pytest

from services.common.feedback import (
    CONFIRMED_FRAUD,
    FALSE_POSITIVE,
    Feedback,
    FeedbackRejected,
    feedback_key,
    feedback_schema,
    make_feedback,
)
from services.model_registry.feature_stats import (
    PSI_FLAG,
    FeatureStats,
    bin_counts,
    display_values,
    psi,
)


def test_schema_is_ksqldb_style_and_round_trips() -> None:
    schema = feedback_schema()
    names = [f["name"] for f in schema["fields"]]
    assert names == ["ID", "VERDICT", "ANALYST", "NOTE", "DECIDED_AT", "MODEL_VERSION", "SCORE"]
    assert all(f["type"][0] == "null" and f["default"] is None for f in schema["fields"])
    fb = make_feedback(7, FALSE_POSITIVE, "ana", "looks fine", decided_at=1, score=0.5)
    buf = io.BytesIO()
    parsed = fastavro.parse_schema(schema)
    fastavro.schemaless_writer(buf, parsed, fb.to_record())
    back = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None)
    assert Feedback.from_record(back) == fb
    assert fb.label == 0 and make_feedback(7, CONFIRMED_FRAUD, "a").label == 1
    assert feedback_key(7) == b"7"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("7", CONFIRMED_FRAUD, "a"), {}),
        ((True, CONFIRMED_FRAUD, "a"), {}),
        ((2**63, CONFIRMED_FRAUD, "a"), {}),
        ((7, "MAYBE", "a"), {}),
        ((7, CONFIRMED_FRAUD, ""), {}),
        ((7, CONFIRMED_FRAUD, "a" * 129), {}),
        ((7, CONFIRMED_FRAUD, "a", "n" * 2001), {}),
        ((7, CONFIRMED_FRAUD, "a\x00"), {}),
        ((7, CONFIRMED_FRAUD, "a"), {"score": float("nan")}),
        ((7, CONFIRMED_FRAUD, "a"), {"decided_at": -1}),
    ],
)
def test_bad_feedback_is_a_client_error(args: tuple, kwargs: dict) -> None:
    with pytest.raises(FeedbackRejected) as err:
        make_feedback(*args, **kwargs)
    assert isinstance(err.value, ValueError) and err.value.code == "bad_feedback"


def test_psi_is_zero_for_the_same_population_and_flags_a_shift() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(20_000, 30)).astype(np.float32)
    train[:, 0] = rng.uniform(0, 172_800, len(train))
    stats = FeatureStats.fit(train)
    same = rng.normal(size=(20_000, 30)).astype(np.float32)
    same[:, 0] = rng.uniform(0, 172_800, len(same)) + 10 * 86_400  # a later day: same hours
    shifted = same.copy()
    shifted[:, 5] += 1.5
    drift_same, drift_shifted = stats.drift(same), stats.drift(shifted)
    assert max(drift_same.values()) < 0.01
    assert drift_shifted["V5"] > PSI_FLAG and drift_shifted["V4"] < 0.01
    assert np.allclose([p.sum() for p in stats.proportions], 1.0)
    assert np.isnan(psi([0.5, 0.5], [0, 0]))
    assert psi([0.5, 0.5], [50, 50]) == pytest.approx(0.0)
    # the normal range is the 1st..99th percentile of what the model reads (TIME: hour of day)
    x = display_values(train)
    assert stats.low[3] == pytest.approx(np.quantile(x[:, 3], 0.01))
    assert 0 <= stats.low[0] < stats.high[0] <= 24


def test_bin_counts_keep_out_of_range_values_in_the_edge_bins() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    assert bin_counts(edges, np.array([-5, 0, 0.5, 1, 2.5, 3, 99, np.nan])).tolist() == [
        3.0,
        1.0,
        3.0,
    ]


def test_stats_round_trip_and_reject_malformed_files() -> None:
    stats = FeatureStats.fit(np.random.default_rng(1).normal(size=(500, 30)))
    back = FeatureStats.from_json(stats.to_json())
    assert np.array_equal(back.low, stats.low) and back.rows == 500
    doc = json.loads(stats.to_json())
    doc["features"]["V1"]["edges"] = [1.0, 0.0]
    with pytest.raises(ValueError):
        FeatureStats.from_dict(doc)
    with pytest.raises(ValueError):
        FeatureStats.from_json(b"{" * 2_000_000)


@pytest.mark.slow
def test_write_feedback_produces_exactly_one_record_read_back_as_latest(
    schema_registry_url: str, topic_name: str
) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from services.common.feedback import read_feedback, write_feedback
    from services.common.kafka import count_records

    assert read_feedback(topic_name) == {}  # no topic yet: nothing reviewed
    first = write_feedback(11, CONFIRMED_FRAUD, "ana", None, topic=topic_name, score=1.5)
    assert count_records(topic_name) == 1
    write_feedback(12, FALSE_POSITIVE, "bo", "a regular", topic=topic_name, model_version="v1")
    changed = write_feedback(11, FALSE_POSITIVE, "cy", "refund, not fraud", topic=topic_name)
    assert count_records(topic_name) == 3
    latest = read_feedback(topic_name)
    assert set(latest) == {11, 12}
    assert latest[11] == changed and latest[11] != first
    assert latest[12].model_version == "v1" and latest[12].note == "a regular"
    subject = SchemaRegistryClient({"url": schema_registry_url}).get_latest_version(
        f"{topic_name}-value"
    )
    assert json.loads(subject.schema.schema_str) == feedback_schema()
    with pytest.raises(FeedbackRejected):
        write_feedback(13, "UNSURE", "ana", topic=topic_name)
    assert count_records(topic_name) == 3
