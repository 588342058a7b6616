"""`fraudstream run` stops what it started in reverse order of start: scorer, then KSQL server,
registry, broker (a broker gone first leaves the scorer's librdkafka errors as the last output),
and Ctrl-C reaches only `run` itself, not the components it started."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from services.common.process import ManagedProcess
from services.pipeline.run import RunState, shutdown


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def stop(self) -> bool:
        self.log.append(self.name)
        return True


class FakeScorer:
    def __init__(self, log: list[str]) -> None:
        self.log, self.stopped = log, threading.Event()

    def run(self) -> None:
        self.stopped.wait(10)

    def stop(self) -> None:
        self.log.append("scorer")
        self.stopped.set()


def state_with(log: list[str]) -> RunState:
    state = RunState()
    state.started_components = [Recorder(n, log) for n in ("kafka", "registry", "ksql")]
    state.scorer = FakeScorer(log)
    state.scorer_thread = threading.Thread(target=state.scorer.run)
    state.scorer_thread.start()
    return state


def test_scorer_first_then_components_in_reverse_order() -> None:
    log: list[str] = []
    shutdown(state_with(log))
    assert log == ["scorer", "ksql", "registry", "kafka"]


def test_keep_stops_only_the_scorer() -> None:
    log: list[str] = []
    state = state_with(log)
    shutdown(state, keep=True)
    assert log == ["scorer"]
    assert state.scorer_thread is None


def test_components_run_in_their_own_session(tmp_path: Path) -> None:
    """Ctrl-C goes to the terminal's foreground process group: a component in its own session
    does not get it, so it is stopped by `shutdown`, after the scorer."""
    process = ManagedProcess("sleeper", tmp_path / "sleeper.pid", tmp_path / "sleeper.log")
    pid = process.start([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert os.getsid(pid) == pid != os.getsid(0)
        assert os.getpgid(pid) != os.getpgid(0)
    finally:
        assert process.stop(timeout=10)
