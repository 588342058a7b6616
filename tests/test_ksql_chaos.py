"""Chaos under the KSQL server alone: the `ksql/` persistent queries run exactly-once (as `stack
up` starts them) while the broker is SIGKILLed and restarted under them, or while the KSQL
server itself is SIGKILLed three times; the scoring topic then holds every source record
exactly once (read_committed), and the queries are RUNNING, not in ERROR.

A query rides a broker restart out through the shared checkpoint (services/common/checkpoint.py):
a transaction the restart broke is aborted and its input read again, and a producer it left
stuck is replaced. A killed server's successor resumes each query from its committed offsets;
its transactional producer's `init_transactions` aborts what the killed one left open.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest
from chaos_support import (
    RECORDS,
    ROOT,
    SCORING,
    ChaosStack,
    chaos_stack,
    end_offsets_total,
    produce_paced,
    wait_for,
)
from test_scorer_support import make_records, read_all

from services.common.avro.codec import AvroDecoder
from services.common.avro.schemas import registry_client
from services.ksql_server.rest.client import KsqlClient, statement_files

pytestmark = pytest.mark.own_stack  # its own broker/stack: runs beside the shared-stack tests

__all__ = ["chaos_stack"]  # the fixture (chaos_support.py)

RATE = 1000  # records/s: slow enough that each kill lands while records still arrive


def _start_stream(
    stack: ChaosStack, held_back: int
) -> tuple[list[int], threading.Thread, threading.Event]:
    """Apply `ksql/` and start the paced source stream; the last `held_back` records wait."""
    client = KsqlClient(stack.settings.ksql_url)
    assert client.apply_files(statement_files([ROOT / "ksql"])) >= 4
    records = make_records(RECORDS, seed=41)
    release = threading.Event()
    producer = produce_paced(
        stack.settings.bootstrap_servers, records, RATE, release=release, held_back=held_back
    )
    return [r["ID"] for r in records], producer, release


def _wait_for_output(stack: ChaosStack, records: float) -> None:
    """Until the scoring topic's end offsets reach `records` (aborted records count too)."""
    bootstrap = stack.settings.bootstrap_servers
    wait_for(lambda: end_offsets_total(SCORING, bootstrap) >= records, 180, "KSQL output")


def _check_output(stack: ChaosStack, ids: list[int]) -> None:
    """The scoring topic, read_committed: every source record once; the queries RUNNING."""
    bootstrap = stack.settings.bootstrap_servers

    def complete() -> bool:
        try:
            return len(read_all(SCORING, bootstrap, timeout=30)) >= len(ids)
        except Exception:
            return False

    wait_for(complete, 240, "the whole stream on the scoring topic")
    time.sleep(2)  # a duplicate committed late would show now
    decoder = AvroDecoder(registry_client(stack.settings.schema_registry_url))
    scored = Counter(decoder.decode(m.value())["ID"] for m in read_all(SCORING, bootstrap))
    assert [i for i, c in scored.items() if c > 1] == []  # no duplicate
    assert set(scored) == set(ids)  # no loss
    listing = KsqlClient(stack.settings.ksql_url).ksql("SHOW QUERIES;")
    states = {q["id"]: q["state"] for q in listing[0]["queries"]}
    assert states and set(states.values()) == {"RUNNING"}, states


@pytest.mark.slow
def test_exactly_once_queries_ride_out_a_broker_restart(chaos_stack: ChaosStack) -> None:
    stack = chaos_stack
    ids, producer, release = _start_stream(stack, held_back=RECORDS // 10)
    release.set()
    _wait_for_output(stack, random.Random().uniform(0.25, 0.45) * RECORDS)
    assert producer.is_alive(), "the kill must land mid-stream"
    stack.kill("kafka")
    time.sleep(2.0)
    stack.restart("kafka")
    producer.join(timeout=180)
    _check_output(stack, ids)


@pytest.mark.slow
def test_exactly_once_queries_survive_three_server_sigkills(chaos_stack: ChaosStack) -> None:
    stack = chaos_stack
    # the last tenth of the stream arrives only after the third kill, which so lands mid-stream
    ids, producer, release = _start_stream(stack, held_back=RECORDS // 10)
    rng = random.Random()
    for i in range(3):
        _wait_for_output(stack, rng.uniform(0.1 + 0.25 * i, 0.25 + 0.25 * i) * RECORDS)
        stack.kill("ksql-server")
        time.sleep(0.5)
        stack.restart("ksql-server")
    release.set()
    producer.join(timeout=180)
    assert not producer.is_alive()
    _check_output(stack, ids)
