"""The demo's path: creditcard_small.csv → produce → KSQL (the project's ksql/ statements,
renamed onto fresh topics) → Avro → train. Marked slow: needs the broker, the Schema Registry
and the KSQL server."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_scorer_support import read_all

from services.common.kafka import count_records, delete_topics
from services.common.settings import get_settings
from services.model_registry.registry import REQUIRED_FILES
from services.trainer.api import make_config, train

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CSV = ROOT.parent / "shared" / "data" / "creditcard_small.csv"
STATEMENTS = ("01_source.sql", "02_preprocessed.sql")


def _ksql(url: str, sql: str) -> Any:
    response = httpx.post(f"{url}/ksql", json={"ksql": sql}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def pipeline(ksql_url: str, schema_registry_url: str) -> Iterator[tuple[str, str]]:
    prefix = f"it_tr_{uuid.uuid4().hex[:8]}"
    source, preprocessed = f"{prefix}_ccf_source", f"{prefix}_ccf_preprocessed_avro"
    for name in STATEMENTS:
        text = (ROOT / "ksql" / name).read_text()
        _ksql(ksql_url, re.sub("creditcardfraud_", f"{prefix}_ccf_", text, flags=re.I))
    yield source, preprocessed
    wanted = {source.upper(), preprocessed.upper()}
    for query in _ksql(ksql_url, "SHOW QUERIES;")[0]["queries"]:
        if wanted & set(query["sinks"]):
            _ksql(ksql_url, f"TERMINATE {query['id']};")
    for name in (preprocessed, source):
        _ksql(ksql_url, f"DROP STREAM IF EXISTS {name};")
    delete_topics([source, preprocessed])


def test_train_from_demo_csv_through_ksql(pipeline: tuple[str, str], tmp_path: Path) -> None:
    from services.producer.replay import produce_csv

    source, preprocessed = pipeline
    produced = produce_csv(CSV, topic=source)
    assert produced.records == 999 and produced.failed == 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if count_records(preprocessed) >= 999:  # offsets: records and commit markers
                break
        except Exception:  # the sink topic appears with the first record
            pass
        time.sleep(1)
    # the query runs exactly-once: its commit markers take offsets too, so read the records
    assert len(read_all(preprocessed, get_settings().bootstrap_servers)) == 999

    mv = train(
        topic=preprocessed,
        from_beginning=True,
        group=f"test-{preprocessed}",
        config=make_config(epochs=3, batch_size=64),
        models_dir=tmp_path,
        announce=False,
    )
    assert set(REQUIRED_FILES) <= {p.name for p in mv.path.iterdir()}
    assert mv.metrics["data"]["rows"] == 999
    assert mv.metrics["data"]["frauds"] == 15
    assert mv.metrics["source"]["rejected"] == {}
    assert mv.summary_line().startswith(f"model {mv.version} ")
