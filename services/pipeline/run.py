"""`fraudstream run`: the whole pipeline on the embedded stack, with a summary at the end.

stack up → ksql apply → datagen (or --csv) → produce (in the background, paced by --speedup)
→ train on the earliest 70 % once KSQL has turned them into labelled Avro → score the stream as
it keeps flowing → summary: records, alerts, precision/recall against the labels, throughput.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import FraudstreamError
from services.common.settings import get_settings
from services.common.topics import (
    ALERTS_TOPIC,
    PREPROCESSED_TOPIC,
    SCORING_TOPIC,
    SOURCE_TOPIC,
)
from services.common.waiting import poll_until
from services.pipeline.labels import LabelCounts, count_labels
from services.pipeline.offsets import TopicMark, mark, start_group_at
from services.pipeline.summary import AlertTally, RunSummary, StageRate, tally_alerts

KSQL_DIR = Path(__file__).resolve().parents[2] / "ksql"
Say = Callable[[str], None]


@dataclass
class RunOptions:
    rows: int = 50_000
    csv: Path | None = None
    seed: int = 42
    speedup: float | None = None
    train_share: float = 0.7
    epochs: int = 10
    metrics_port: int = 9464
    stage_timeout_s: float = 600.0


@dataclass
class RunState:
    """What the run started and measured, for the summary and for a clean stop."""

    started_components: list[Any] = field(default_factory=list)
    marks: dict[str, TopicMark] = field(default_factory=dict)
    stages: list[StageRate] = field(default_factory=list)
    scorer: Any = None
    scorer_thread: threading.Thread | None = None
    scorer_started: float = 0.0
    console_url: str | None = None


def prepare_data(options: RunOptions, say: Say) -> Path:
    """The CSV to replay: --csv as given, or generated rows (made once, reused by later runs)."""
    if options.csv is not None:
        if not options.csv.is_file():
            raise FraudstreamError(f"no such CSV file: {options.csv}", code="no_such_file")
        return options.csv
    from services.producer.datagen import write_csv

    path = get_settings().home / "data" / f"transactions-{options.rows}-seed{options.seed}.csv"
    if not path.exists():
        say(f"generating {options.rows} transactions → {path}")
        partial = path.with_suffix(".partial")
        write_csv(partial, options.rows, seed=options.seed)
        partial.rename(path)
    return path


def start_stack(state: RunState, say: Say) -> None:
    """Start what does not answer yet, then check that the broker takes this run's own
    credentials: a wrong password is a one-line error now, not a stage that waits forever."""
    from services.common.kafka import wait_for_broker
    from services.stack.components import stack_components

    for component in stack_components(get_settings()):
        if not component.healthy():
            say(f"starting {component.name} …")
            component.start()
            state.started_components.append(component)
    wait_for_broker(timeout=30)
    start_console(state, say)


def start_console(state: RunState, say: Say) -> None:
    """The analyst's console, started beside the run (in the background: the run does not wait
    for it, and one that cannot start is a note, not a failed run)."""
    from services.stack.components import console_component

    settings = get_settings()
    if settings.broker_sasl or settings.kafka_security.uses_sasl:
        return  # the SASL broker has no console user
    console = console_component(settings)
    state.console_url = console.url
    if console.healthy():
        return

    def start() -> None:
        try:
            console.start()
        except FraudstreamError as exc:
            say(f"console not started: {exc}")

    say(f"starting the console at {console.url}")
    state.started_components.append(console)
    threading.Thread(target=start, name="console", daemon=True).start()


def apply_ksql(say: Say) -> int:
    from services.ksql_server.rest.client import KsqlClient, statement_files

    applied = KsqlClient(get_settings().ksql_url).apply_files(statement_files([KSQL_DIR]))
    say(f"applied {applied} KSQL statements from {KSQL_DIR.name}/")
    return applied


def wait_for_growth(topic: str, since: TopicMark, expected: int, timeout: float, say: Say) -> None:
    """Block until `expected` records were added to `topic`."""
    poll_until(
        lambda: mark(topic).added_since(since),
        expected,
        timeout,
        lambda added: f"waiting for {topic}: {added}/{expected}",
        lambda added: (
            f"{topic}: only {added} of {expected} records arrived within {timeout:.0f}s "
            "(is the KSQL server running its persistent queries? see `fraudstream ksql "
            'query "SHOW QUERIES;"` and .fraudstream/logs/ksql-server.log)'
        ),
        say,
    )


def run_pipeline(options: RunOptions, say: Say, state: RunState | None = None) -> RunSummary:
    """Run every stage; the scorer keeps running in `state.scorer_thread` when this returns."""
    state = state or RunState()
    start_stack(state, say)
    apply_ksql(say)
    csv = prepare_data(options, say)
    everything = count_labels(csv)
    train_rows = int(everything.rows * options.train_share)
    head = count_labels(csv, first_rows=train_rows)
    for topic in (SOURCE_TOPIC, PREPROCESSED_TOPIC, SCORING_TOPIC, ALERTS_TOPIC):
        state.marks[topic] = mark(topic)

    produced: dict[str, Any] = {}
    producer = threading.Thread(
        target=_produce, args=(csv, options, produced), name="produce", daemon=True
    )
    producer.start()
    ksql_watch = GrowthWatch(SCORING_TOPIC, state.marks[SCORING_TOPIC])
    ksql_watch.start()
    version = _train(options, state, head, say)
    _start_scorer(options, state, version, say)
    producer.join()
    if "error" in produced:
        raise produced["error"]
    result = produced["result"]
    state.stages.insert(0, StageRate("produce", result.records, result.seconds))
    wait_for_growth(
        SCORING_TOPIC, state.marks[SCORING_TOPIC], result.records, options.stage_timeout_s, say
    )
    ksql_watch.stop()
    state.stages.insert(1, StageRate("ksql", result.records, ksql_watch.reached(result.records)))
    _wait_for_scorer(state, result.records, options.stage_timeout_s, say)
    tally = tally_alerts(state.marks[ALERTS_TOPIC])
    return RunSummary(
        records_in=mark(SOURCE_TOPIC).added_since(state.marks[SOURCE_TOPIC]),
        bad_lines=result.bad,
        labels=everything,
        alerts=tally,
        model_version=version.version,
        model_line=version.summary_line(),
        report=version.path / "report.md",
        stages=state.stages,
        metrics_port=options.metrics_port,
        console_url=state.console_url,
    )


class GrowthWatch(threading.Thread):
    """Samples a topic's growth in the background, so a stage's throughput is measured even
    while the main thread is busy (training)."""

    def __init__(self, topic: str, since: TopicMark, interval_s: float = 0.2) -> None:
        super().__init__(name=f"watch-{topic}", daemon=True)
        self.topic, self.since, self.interval_s = topic, since, interval_s
        self.started_at = time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.monotonic(), mark(self.topic).added_since(self.since)))
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)

    def reached(self, count: int) -> float:
        """Seconds from the start of the watch until `count` records had arrived."""
        for at, added in self.samples:
            if added >= count:
                return at - self.started_at
        return time.monotonic() - self.started_at


def _produce(csv: Path, options: RunOptions, out: dict[str, Any]) -> None:
    from services.producer.replay import produce_csv

    try:
        out["result"] = produce_csv(csv, SOURCE_TOPIC, speedup=options.speedup)
    except Exception as exc:  # handed to the main thread, which raises it
        out["error"] = exc


def _train(options: RunOptions, state: RunState, head: LabelCounts, say: Say) -> Any:
    from services.trainer.api import train
    from services.trainer.ingest import wait_for_records

    group = f"fraudstream-run-train-{int(time.time())}"
    start_group_at(group, state.marks[PREPROCESSED_TOPIC])
    # the same wait as `fraudstream train --wait-rows` (docker compose's trainer)
    wait_for_records(PREPROCESSED_TOPIC, group, head.labelled, options.stage_timeout_s, say)
    say(f"training on the earliest {head.labelled} labelled transactions ({head.frauds} frauds)")
    started = time.monotonic()
    version = train(max_records=head.labelled, epochs=options.epochs, group=group)
    state.stages.append(StageRate("train", head.labelled, time.monotonic() - started))
    say(version.summary_line())
    return version


def _start_scorer(options: RunOptions, state: RunState, version: Any, say: Say) -> None:
    from services.scorer.scorer import Scorer, ScorerConfig

    group = f"fraudstream-run-score-{int(time.time())}"
    mark_ = state.marks[SCORING_TOPIC]
    start_group_at(group, mark_ if mark_.ends else mark(SCORING_TOPIC))
    config = ScorerConfig(group=group, model="latest", metrics_port=options.metrics_port)
    state.scorer = Scorer(config)
    state.scorer_thread = threading.Thread(target=state.scorer.run, name="score", daemon=True)
    state.scorer_started = time.monotonic()
    state.scorer_thread.start()
    say(f"scoring {SCORING_TOPIC} with model {version.version} (exactly-once)")


def _wait_for_scorer(state: RunState, expected: int, timeout: float, say: Say) -> None:
    scorer, thread = state.scorer, state.scorer_thread
    poll_until(
        lambda: scorer.result.scored + scorer.result.dead_letters,
        expected,
        timeout,
        lambda done: f"scoring: {done}/{expected}",
        lambda done: f"scorer: {done} of {expected} records in {timeout:.0f}s",
        say,
        alive=lambda: thread is None or thread.is_alive(),
        died="the scorer stopped early; see the log above",
    )
    elapsed = time.monotonic() - state.scorer_started
    state.stages.append(StageRate("score", scorer.result.scored, elapsed))


def stop_scorer(state: RunState) -> None:
    """Finish the scorer's batch, then drop it: its Kafka clients close when it is collected,
    before the stack they talk to is stopped."""
    if state.scorer is not None:
        state.scorer.stop()
    if state.scorer_thread is not None:
        state.scorer_thread.join(timeout=60)
    state.scorer, state.scorer_thread = None, None
    gc.collect()


def stop_started_components(state: RunState) -> None:
    for component in reversed(state.started_components):
        component.stop()


def shutdown(state: RunState, keep: bool = False) -> None:
    """Stop in reverse order of start: the scorer first (its last batch commits while the
    broker is still there, so no librdkafka connection errors end the output), then the
    components this run started, the KSQL server before the registry before the broker. The
    components run in their own sessions, so Ctrl-C reaches only this process."""
    stop_scorer(state)
    if not keep:
        stop_started_components(state)


__all__ = ["AlertTally", "RunOptions", "RunState", "run_pipeline", "shutdown", "stop_scorer"]
