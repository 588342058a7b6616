"""Alert explanations end to end: the scorer's EXPLANATION against an offline numpy computation
with the same model on the same records, under a subject that the registry holds BACKWARD."""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from test_scorer_support import feature_matrix, make_records, produce_records, read_all

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import ksql_record_schema, registry_client
from services.common.topics import AVRO_FEATURE_FIELDS
from services.model_registry.feature_stats import FeatureStats, display_values, write_feature_stats
from services.scorer.records import ALERT_FIELDS, alert_schema


def save_model_with_stats(models_dir: Path, train: np.ndarray) -> str:
    """A small untrained autoencoder with feature statistics; about 5% of rows alert."""
    import keras

    from services.model_registry.preprocessing import Preprocessing
    from services.model_registry.registry import ModelRegistry

    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((30,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(30)]
    )
    pre = Preprocessing.fit(train)
    x = pre.transform(train)
    threshold = float(np.quantile(np.mean((x - model(x).numpy()) ** 2, axis=1), 0.95))
    return ModelRegistry(models_dir).save_version(
        model,
        pre,
        {"threshold": threshold, "rule": "test quantile"},
        {"test": {}},
        write_extra=lambda folder, _v: write_feature_stats(folder, train) and None,
        announce=False,
    )


@pytest.mark.slow
def test_explanations_match_an_offline_numpy_computation(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    from services.model_registry.registry import ModelRegistry
    from services.scorer.scorer import Scorer, ScorerConfig

    train = feature_matrix(make_records(2000, seed=21))
    version = save_model_with_stats(tmp_path, train)
    records = make_records(600, seed=22)
    topic, alerts_topic = f"t_expl_in_{unique}", f"t_expl_alerts_{unique}"
    produce_records(topic, records, schema_registry_url, kafka_bootstrap)
    # alerts written before issue 17: the old schema, and the subject held BACKWARD
    client = SchemaRegistryClient({"url": schema_registry_url})
    subject = f"{alerts_topic}-value"
    old = json.dumps(ksql_record_schema(list(ALERT_FIELDS)))
    client.register_schema(subject, Schema(old, "AVRO"))
    client.set_compatibility(subject, "BACKWARD")

    result = Scorer(
        ScorerConfig(
            topic=topic,
            alerts_topic=alerts_topic,
            dlq_topic=f"t_expl_dlq_{unique}",
            group=f"t-expl-{unique}",
            models_topic=None,
            model=version,
            from_beginning=True,
            stop_at_end=True,
            models_dir=tmp_path,
            batch_size=250,
        )
    ).run()
    assert result.scored == 600 and result.alerts > 10
    latest = client.get_latest_version(subject)
    registered = fastavro.schema.to_parsing_canonical_form(json.loads(latest.schema.schema_str))
    assert latest.version == 2
    assert registered == fastavro.schema.to_parsing_canonical_form(alert_schema())
    assert client.get_compatibility(subject) == "BACKWARD"

    decoder = AvroDecoder(registry_client(schema_registry_url))
    decoded = [decoder.decode(m.value()) for m in read_all(alerts_topic, kafka_bootstrap)]
    alerts = {a["ID"]: a for a in decoded}
    assert len(alerts) == result.alerts
    # offline: the same model, Keras forward pass, then numpy only
    loaded = ModelRegistry(tmp_path).load(version)
    by_id = {r["ID"]: i for i, r in enumerate(records)}
    rows = np.array([by_id[i] for i in alerts])
    raw = feature_matrix(records)[rows]
    x = loaded.preprocessing.transform(raw)
    squared = (x - loaded.model.predict(x, verbose=0)) ** 2  # type: ignore[union-attr]
    shares = squared / squared.sum(axis=1, keepdims=True)
    shown = display_values(raw)
    stats = FeatureStats.fit(train)
    for row, ident in enumerate(alerts):
        got = alerts[ident]["EXPLANATION"]
        assert len(got) == 5
        expected = np.argsort(-shares[row], kind="stable")[:5]
        assert [e["FEATURE"] for e in got] == [AVRO_FEATURE_FIELDS[f] for f in expected]
        assert np.allclose([e["SHARE"] for e in got], shares[row, expected], atol=1e-5)
        assert np.allclose([e["VALUE"] for e in got], shown[row, expected], rtol=1e-6)
        assert [e["NORMAL_LOW"] for e in got] == stats.low[expected].tolist()
        assert [e["NORMAL_HIGH"] for e in got] == stats.high[expected].tolist()
        assert [e["SHARE"] for e in got] == sorted((e["SHARE"] for e in got), reverse=True)
