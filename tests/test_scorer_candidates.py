"""A non-autoencoder champion streams like the autoencoder: the scorer hot-reloads an ensemble
version mid-stream (through models/LATEST), scores it exactly once, and its alerts are exactly
what scoring the same records offline with that version gives."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_scorer_support import (
    feature_matrix,
    make_records,
    offline_alert_ids,
    produce_records,
    read_all,
    save_model,
    wait_until,
)

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.model_registry.registry import ModelRegistry
from services.model_registry.scoring import CandidateLoadedModel
from services.scorer.scorer import Scorer, ScorerConfig


def save_ensemble(models_dir: Path, base: str, alert_fraction: float = 0.05) -> str:
    """The trainer's ensemble candidate on top of `base`'s network, registered (not LATEST)."""
    from services.trainer.candidates import ensemble
    from services.trainer.core import scorer_for

    registry = ModelRegistry(models_dir)
    loaded = registry.load(base)
    assert not isinstance(loaded, CandidateLoadedModel)
    x = loaded.preprocessing.transform(feature_matrix(make_records(3000, seed=77)))
    autoencoder = scorer_for(loaded.model, loaded.preprocessing, 0.0)
    candidate = ensemble(x[:2000], x[2000:], np.zeros(1000), autoencoder, loaded.preprocessing, 3)
    threshold = float(np.quantile(candidate.scores(x), 1 - alert_fraction))
    return registry.save_version(
        loaded.model,
        loaded.preprocessing,
        {"threshold": threshold, "rule": "test quantile", "model": "ensemble"},
        {"test": {}, "champion": {"name": "ensemble"}},
        write_extra=lambda folder, _v: candidate.write(folder),
        make_latest=False,
        announce=False,
    )


@pytest.mark.slow
def test_hot_reload_to_an_ensemble_champion(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    v1 = save_model(tmp_path, seed=1)
    v2 = save_ensemble(tmp_path, v1)
    assert isinstance(ModelRegistry(tmp_path).load(v2), CandidateLoadedModel)
    topic, alerts_topic = f"t_cand_in_{unique}", f"t_cand_alerts_{unique}"
    records = make_records(6000, seed=41)
    produce_records(topic, records[:2000], schema_registry_url, kafka_bootstrap)
    scorer = Scorer(
        ScorerConfig(
            topic=topic,
            alerts_topic=alerts_topic,
            dlq_topic=f"t_cand_dlq_{unique}",
            group=f"t-cand-{unique}",
            models_topic=None,
            from_beginning=True,
            models_dir=tmp_path,
            batch_size=500,
            batch_timeout_ms=50,
            model_poll_interval_s=0.2,
        )
    )
    thread = threading.Thread(target=scorer.run)
    thread.start()
    try:
        wait_until(lambda: scorer.result.scored >= 2000, 90)
        ModelRegistry(tmp_path).set_latest(v2)  # the scorer follows LATEST
        in_use = scorer.metrics.registry.get_sample_value
        wait_until(lambda: in_use("fraudstream_scorer_model_info", {"version": v2}) == 1, 90)
        produce_records(topic, records[2000:], schema_registry_url, kafka_bootstrap)
        wait_until(lambda: scorer.result.scored >= len(records), 90)
    finally:
        scorer.stop()
        thread.join(60)
    result = scorer.result
    assert set(result.versions) == {v1, v2} and result.versions[v1] == 2000
    decoder = AvroDecoder(registry_client(schema_registry_url))
    alerts = [decoder.decode(m.value()) for m in read_all(alerts_topic, kafka_bootstrap)]
    assert Counter(a["ID"] for a in alerts).most_common(1)[0][1] == 1
    got = {(a["ID"], a["MODEL_VERSION"]) for a in alerts}
    expected = {(i, v1) for i in offline_alert_ids(tmp_path, v1, records[:2000])} | {
        (i, v2) for i in offline_alert_ids(tmp_path, v2, records[2000:])
    }
    assert got == expected and any(v == v2 for _, v in got)
