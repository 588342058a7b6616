"""Scale-out under churn: several `fraudstream score` processes in one consumer group over a
multi-partition topic, one SIGKILLed mid-stream, one added, the killed one's instance started
again; the alerts must be exactly the offline alerts (none lost, none twice).

Static membership (`--instance-id`, which is both the member's `group.instance.id` and part of
its transactional id) is what keeps this cheap and exact: the added scorer triggers a rebalance
that moves partitions between live members, while the killed member's partitions stay parked
until a process with its instance id comes back, takes them at once (no session timeout to
wait out) and, with the same transactional id, fences the dead process's open transaction.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from test_scorer_integration import (
    committed_total,
    decode_alerts,
    names,
    produce_paced,
    score_process,
)
from test_scorer_support import make_records, offline_alert_ids, save_model, serialize_records

from services.common.kafka import ensure_topic

RECORDS = 30_000
PARTITIONS = 6
PATIENCE_S = 480.0
"""Each wait's limit: generous, since four scorer start-ups (TensorFlow) on a loaded 2-core
machine take minutes; on a quiet one the whole test takes well under a minute."""


@pytest.mark.slow
def test_kill_one_scorer_and_add_another_gives_exactly_the_offline_alerts(
    kafka_bootstrap: str, schema_registry_url: str, unique: str, tmp_path: Path
) -> None:
    version = save_model(tmp_path, seed=5)
    n = names(unique)
    records = make_records(RECORDS, seed=41)
    ensure_topic(n["topic"], partitions=PARTITIONS, bootstrap=kafka_bootstrap)
    items = serialize_records(n["topic"], records, schema_registry_url)
    changes_done = threading.Event()
    held_back = RECORDS // 10  # arrives only after the kill and the adds: they land mid-stream
    feeder = produce_paced(
        n["topic"], items, kafka_bootstrap, RECORDS // 10, changes_done, held_back
    )

    def scorer(instance: str):  # type: ignore[no-untyped-def]
        extra = ("--instance-id", instance, "--commit-interval-ms", "20")
        return score_process(n, version, tmp_path, *extra, stop_at_end=False)

    def committed() -> int:
        return committed_total(n["group"], n["topic"], PARTITIONS, kafka_bootstrap)

    first, second = scorer("a"), scorer("b")
    live = [second]
    try:
        _wait_for(lambda: committed() >= RECORDS // 5, [first, second], PATIENCE_S)
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = committed()
        live += [scorer("c"), scorer("a")]  # one added, the killed one's instance back
        _wait_for(lambda: _members(n["group"]) == {"a", "b", "c"}, live, PATIENCE_S)
        changes_done.set()
        feeder.join(timeout=120)
        assert not feeder.is_alive()
        _wait_for(lambda: committed() == RECORDS, live, PATIENCE_S)
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        outs = [proc.communicate(timeout=120) for proc in live]
        assert all(proc.returncode == 0 for proc in live), [e.decode()[-800:] for _o, e in outs]
        scored = [_scored(out.decode()) for out, _err in outs]
    finally:
        changes_done.set()
        for proc in (first, *live):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    assert 0 < killed_at <= RECORDS - held_back  # the tail came after the kill and the adds
    assert sum(1 for s in scored if s > 0) >= 2, scored  # the tail was shared after the changes
    alerts = decode_alerts(n["alerts_topic"], kafka_bootstrap, schema_registry_url)
    ids = Counter(a["ID"] for a in alerts)
    assert [i for i, c in ids.items() if c > 1] == []  # none twice
    assert set(ids) == offline_alert_ids(tmp_path, version, records)  # none missing or extra


def _wait_for(predicate, procs: list, timeout: float) -> None:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, f"the scorers made no progress in {timeout:.0f} s"
        time.sleep(0.1)


def _members(group: str) -> set[str]:
    """Instance ids of the members of a stable group that hold partitions (empty before)."""
    from confluent_kafka import ConsumerGroupState

    from services.common.kafka import make_admin

    admin = make_admin(quiet=True)  # held until the answer is in: a dropped client cancels it
    try:
        found = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:  # not formed yet
        return set()
    if found.state != ConsumerGroupState.STABLE:
        return set()
    return {
        str(m.group_instance_id).rsplit(".", 1)[-1]
        for m in found.members
        if m.assignment.topic_partitions
    }


def _scored(out: str) -> int:
    lines = [line for line in out.splitlines() if line.startswith("scored ")]
    return int(lines[-1].split()[1]) if lines else 0
