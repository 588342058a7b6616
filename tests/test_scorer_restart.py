"""The scorer's answer to a Kafka error its transaction helpers cannot resolve: new clients in the
same process (no broker: the decisions only; the broker chaos test runs it for real)."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.common.errors import FraudstreamError
from services.scorer import scorer as scorer_module
from services.scorer.scorer import Scorer, ScorerConfig


class _Script:
    """Plays `_loop` and `_clients`: each loop run raises the next error (None: returns), and
    commits `progress` batches first."""

    def __init__(self, errors: list[KafkaException | None], progress: int = 0) -> None:
        self.errors = errors
        self.progress = progress
        self.loops: list[object] = []
        self.clients = 0
        self.drops = 0

    def install(self, scorer: Scorer, monkeypatch: pytest.MonkeyPatch) -> None:
        def loop(consumer: object, *_args: Any) -> None:
            self.loops.append(consumer)
            scorer.result.batches += self.progress
            error = self.errors.pop(0)
            if error is not None:
                raise error

        def clients(_bootstrap: str) -> tuple[Any, Any]:
            self.clients += 1
            return f"consumer-{self.clients}", f"producer-{self.clients}"

        def drop() -> None:
            self.drops += 1

        monkeypatch.setattr(scorer, "_loop", loop)
        monkeypatch.setattr(scorer, "_clients", clients)
        monkeypatch.setattr(scorer, "_drop_clients", drop)
        monkeypatch.setattr(scorer_module, "RESTART_BACKOFF_S", 0.0)


def _run(scorer: Scorer) -> None:
    scorer._run_clients("b", "consumer-0", "producer-0", None, None, None)  # type: ignore[arg-type]


def test_an_unresolved_kafka_error_gets_new_clients_in_the_same_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stuck = KafkaException(KafkaError(KafkaError._TIMED_OUT, "send_offsets still blocked"))
    fatal = KafkaException(KafkaError(KafkaError._FATAL, "producer fatal", fatal=True))
    scorer = Scorer(ScorerConfig())
    script = _Script([stuck, fatal, None])
    script.install(scorer, monkeypatch)
    _run(scorer)
    assert script.loops == ["consumer-0", "consumer-1", "consumer-2"]
    assert script.drops == 2


def test_fenced_twice_without_a_commit_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced", fatal=True))
    scorer = Scorer(ScorerConfig())
    _Script([fenced, fenced]).install(scorer, monkeypatch)
    with pytest.raises(FraudstreamError, match="another instance"):
        _run(scorer)
    # a fence after a commit (e.g. a transaction timed out during an outage) is recovered from
    scorer = Scorer(ScorerConfig())
    script = _Script([fenced, fenced, None], progress=1)
    script.install(scorer, monkeypatch)
    _run(scorer)
    assert len(script.loops) == 3


def test_a_stop_during_the_pause_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = Scorer(ScorerConfig())
    script = _Script([KafkaException(KafkaError(KafkaError._TRANSPORT, "broker away"))])
    script.install(scorer, monkeypatch)
    scorer.stop()
    _run(scorer)
    assert script.clients == 0
