"""ksqlDB's own query-validation tests (../shared/ksql-qtt) against the engine on the real
broker: no failures among the cases run, and a minimum number passing (skips are reported with
their reasons and never counted as passes)."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest

from services.ksql_conformance.qtt import (
    Case,
    Runner,
    load_cases,
    normalize,
    strip_comments,
)

QTT = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "ksql-qtt" / "query-validation-tests"
)
CORE = ["project-filter.json", "delimited.json", "json.json"]


def test_comment_stripping_and_format_expansion(tmp_path: Path) -> None:
    text = (
        '{"tests": [ // a comment\n {"name": "n", "format": ["JSON", "AVRO"], '
        '"statements": ["CREATE {FORMAT} // not a comment"]} /* block */ ]}'
    )
    assert json.loads(strip_comments(text))["tests"][0]["name"] == "n"
    path = tmp_path / "x.json"
    path.write_text(text)
    cases = load_cases(path)
    assert [c.name for c in cases] == ["n - JSON", "n - AVRO"]
    assert cases[1].statements == ["CREATE AVRO // not a comment"]


def test_normalize_matches_numbers_and_case() -> None:
    assert normalize({"a": 1, "B": [1.0, None]}) == normalize({"A": 1.0, "b": [1, None]})
    assert normalize("1") != normalize(1)


@pytest.mark.slow
@pytest.mark.skipif(not QTT.exists(), reason="ksql-qtt corpus not present")
def test_core_qtt_files_pass(kafka_bootstrap: str, schema_registry_url: str) -> None:
    cases: list[Case] = []
    for name in CORE:
        cases += load_cases(QTT / name)
    results = Runner(kafka_bootstrap, schema_registry_url, workers=6).run(cases)
    by_status = collections.Counter(r.status for r in results)
    failures = [
        f"{r.case.file} :: {r.case.name}: {r.reason}" for r in results if r.status == "failed"
    ]
    assert not failures, "\n".join(failures)
    skipped = {r.case.name: r.reason for r in results if r.status == "skipped"}
    assert not skipped, skipped  # PROTOBUF (delimited.json) runs too now
    assert by_status["passed"] >= 119, by_status


@pytest.mark.slow
@pytest.mark.skipif(not QTT.exists(), reason="ksql-qtt corpus not present")
def test_a_failing_case_is_reported_failed_not_passed(kafka_bootstrap: str) -> None:
    """The runner must be able to fail: a case whose expected output is wrong."""
    spec = {
        "statements": [
            "CREATE STREAM T (K STRING KEY, ID BIGINT) "
            "WITH (kafka_topic='t', value_format='JSON');",
            "CREATE STREAM O AS SELECT K, ID + 1 AS X FROM T;",
        ],
        "inputs": [{"topic": "t", "key": "a", "value": {"ID": 1}}],
        "outputs": [{"topic": "O", "key": "a", "value": {"X": 3}}],
    }
    runner = Runner(kafka_bootstrap, None, workers=1)
    [bad] = runner.run([Case("synthetic.json", "wrong expectation", spec)])
    assert bad.status == "failed" and "value" in bad.reason
    spec["outputs"] = [{"topic": "O", "key": "a", "value": {"X": 2}}]
    [good] = runner.run([Case("synthetic.json", "right expectation", spec)])
    assert good.status == "passed", good.reason


@pytest.mark.slow
def test_the_topics_a_case_creates_keep_their_1970_records(kafka_bootstrap: str) -> None:
    """Cases date records near 1970: the sink a case's CSAS creates must keep them forever like
    its inputs, or the broker's five-minute retention check can empty it before it is read (a
    CI failure: project-filter "Filter on long literal" read 0 of 1 records)."""
    from confluent_kafka.admin import ConfigResource

    spec = {
        "statements": [
            "CREATE STREAM T (K STRING KEY, ID BIGINT) "
            "WITH (kafka_topic='t', value_format='JSON');",
            "CREATE STREAM O AS SELECT * FROM T;",
        ]
    }
    runner = Runner(kafka_bootstrap, None, workers=1)
    prefix = "retention_check_"
    runner._create_topics(spec, prefix)
    engine = runner._engine(Case("synthetic.json", "retention", spec), prefix)
    try:
        for text in spec["statements"]:
            engine.execute(text)
        resource = ConfigResource("topic", prefix + "O")
        configs = runner.admin.describe_configs([resource])[resource].result(20)
        assert configs["retention.ms"].value == "-1"
    finally:
        engine.close()
        runner._cleanup(prefix)
