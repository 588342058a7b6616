"""Window assignment, grace, retention, session merging and EMIT FINAL (runtime/windows.py).

The scenarios are ksqlDB's own test cases (suppress.json, session-windows.json, …) replayed on
the pure state machine with COUNT as the aggregate, so the expected outputs are ksqlDB's.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.ksql_server.runtime.windows import Change, WindowDef, WindowedAggregation


class DictStore:
    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(tuple(key), default)

    def put(self, key: Any, value: Any, timestamp: int | None = None) -> None:
        self.data[tuple(key)] = value

    def delete(self, key: Any) -> None:
        self.data.pop(tuple(key), None)

    def items(self) -> list[tuple[Any, Any]]:
        return list(self.data.items())


def counting(window: WindowDef, props: dict[str, Any] | None = None) -> WindowedAggregation:
    return WindowedAggregation(
        window,
        DictStore(),
        initial=lambda: 0,
        fold=lambda acc, _args: acc + 1,
        merge=lambda a, b: a + b,
        properties=props
        if props is not None
        else {"__emit.interval.ms.kstreams.windowed.aggregation__": 0},
    )


def feed(agg: WindowedAggregation, records: list[tuple[str, int]]) -> list[tuple[Any, ...]]:
    out: list[Change] = []
    for key, ts in records:
        out += agg.add((key,), None, ts)
    agg.expire()  # once per batch, as the operator does
    return [(c.group[0], c.start, c.end, c.accs, c.timestamp) for c in out]


def test_window_assignment() -> None:
    tumbling = WindowDef.of("TUMBLING", 30_000)
    assert tumbling.windows_for(45_000) == [(30_000, 60_000)]
    hopping = WindowDef.of("HOPPING", 5, advance_ms=2)
    assert hopping.windows_for(5) == [(2, 7), (4, 9)]
    assert hopping.windows_for(0) == [(0, 5)]


def test_defaults_follow_ksqldb() -> None:
    w = WindowDef.of("TUMBLING", 60_000)
    assert w.grace_ms == 24 * 3600 * 1000 - 60_000
    assert w.retention_ms == 24 * 3600 * 1000
    assert WindowDef.of("SESSION", 10, grace_ms=5).retention_ms == 15


def test_tumbling_changes_and_late_records() -> None:
    agg = counting(WindowDef.of("TUMBLING", 2, grace_ms=1))
    assert feed(agg, [("k", 0), ("k", 1), ("k", 2), ("k", 5), ("k", 0)]) == [
        ("k", 0, 2, 1, 0),
        ("k", 0, 2, 2, 1),
        ("k", 2, 4, 1, 2),
        ("k", 4, 6, 1, 5),
    ]  # the last record's window [0,2) closed at stream time 5 - grace 1 = 4: dropped


@pytest.mark.parametrize(
    ("window", "records", "expected"),
    [
        # suppress.json: "should emit final result immediately at window end if grace is zero"
        (WindowDef.of("TUMBLING", 2, grace_ms=0, emit_final=True), [0, 1, 2], [(0, 2, 2, 1)]),
        # "should not emit before window end if no grace period given"
        (WindowDef.of("TUMBLING", 2, emit_final=True), [0, 1], []),
        # "should include out of order events before window end plus grace period passes"
        (
            WindowDef.of("TUMBLING", 2, grace_ms=1, emit_final=True),
            [0, 1, 2, 1, 0, 5],
            [(2, 4, 1, 2)],
        ),
        # "should support final results for hopping windows"
        (
            WindowDef.of("HOPPING", 5, advance_ms=2, grace_ms=1, emit_final=True),
            [0, 1, 2, 1, 6, 5, 10],
            [(0, 5, 4, 2), (4, 9, 2, 6)],
        ),
        # "should support final results for session windows"
        (
            WindowDef.of("SESSION", 5, grace_ms=6, emit_final=True),
            [0, 4, 8, 12, 14, 30, 29, 17, 42],
            [(0, 14, 5, 14), (29, 30, 2, 30)],
        ),
        # "tumbling windows with large jump": nothing left to emit
        (
            WindowDef.of("TUMBLING", 2, grace_ms=2, emit_final=True),
            [0, 1, 2, 0, 3, 0, 10, 0, 30],
            [],
        ),
    ],
)
def test_emit_final_as_ksqldb(
    window: WindowDef, records: list[int], expected: list[tuple[int, ...]]
) -> None:
    out = feed(counting(window), [("k1", ts) for ts in records])
    assert [o[1:] for o in out] == expected


def test_emit_final_throttled_by_wall_clock() -> None:
    now = [0.0]
    agg = counting(WindowDef.of("TUMBLING", 2, 0, 0, retention_ms=100, emit_final=True), props={})
    agg.clock = lambda: now[0]
    assert feed(agg, [("k", 0), ("k", 2)]) == []  # the first check (nothing closed) throttles
    now[0] = 1.5
    assert feed(agg, [("k", 4)]) == [("k", 0, 2, 1, 0), ("k", 2, 4, 1, 2)]
    assert feed(agg, [("k", 6)]) == []  # within 1 s of the last check
    now[0] = 3.0
    assert feed(agg, [("k", 8)]) == [("k", 4, 6, 1, 4), ("k", 6, 8, 1, 6)]


def test_session_merge_retracts_and_emits() -> None:
    """session-windows / latest-offset-udaf 'merging session windows': 0, 1500, then 700."""
    agg = counting(WindowDef.of("SESSION", 1000))
    assert feed(agg, [("0", 0), ("0", 1500), ("0", 700)]) == [
        ("0", 0, 0, 1, 0),
        ("0", 1500, 1500, 1, 1500),
        ("0", 0, 0, None, 0),
        ("0", 1500, 1500, None, 1500),
        ("0", 0, 1500, 3, 1500),
    ]


def test_session_late_record_dropped_and_keys_separate() -> None:
    agg = counting(WindowDef.of("SESSION", 5, grace_ms=0))
    assert feed(agg, [("a", 0), ("b", 3), ("a", 20), ("a", 2)]) == [
        ("a", 0, 0, 1, 0),
        ("b", 3, 3, 1, 3),
        ("a", 20, 20, 1, 20),
    ]


def test_retention_bounds_state() -> None:
    agg = counting(WindowDef.of("TUMBLING", 10, grace_ms=0, retention_ms=30))
    feed(agg, [(f"k{i}", i * 10) for i in range(100)])
    starts = sorted(w[1] for w in agg.windows())
    assert starts == [960, 970, 980, 990]
    assert [w[1] for w in agg.visible()] == [970, 980, 990]


def test_state_survives_a_new_instance() -> None:
    window = WindowDef.of("TUMBLING", 10, grace_ms=0)
    agg = counting(window)
    feed(agg, [("k", 1), ("k", 2)])
    again = counting(window)
    again.store = agg.store
    assert feed(again, [("k", 3), ("k", 25), ("k", 4)]) == [
        ("k", 0, 10, 3, 3),
        ("k", 20, 30, 1, 25),
    ]


def test_stream_time_follows_a_rolled_back_store() -> None:
    """An aborted transaction rolls the store back; the stream time must go back with it."""
    agg = counting(WindowDef.of("TUMBLING", 2, grace_ms=0, emit_final=True))
    feed(agg, [("k", 0), ("k", 1)])
    assert isinstance(agg.store, DictStore)
    saved = dict(agg.store.data)
    assert feed(agg, [("k", 2)]) == [("k", 0, 2, 2, 1)]
    agg.store.data = saved  # the rollback
    assert feed(agg, [("k", 2)]) == [("k", 0, 2, 2, 1)]  # emitted again, as after a restart


def test_session_past_retention_does_not_merge_within_one_batch() -> None:
    """session-windows.json 'out of order - explicit grace period', all records in one batch:
    the session [0, 0] is past retention once stream time is 100010, so the record at 10010
    opens a new session instead of merging into it (whatever the batch boundaries)."""
    agg = counting(WindowDef.of("SESSION", 30_000, grace_ms=60_000))
    records = [("0", 0), ("0", 100_010), ("0", 10_009), ("0", 10_010), ("1", 10_009)]
    assert feed(agg, [*records, ("1", 10_010)]) == [
        ("0", 0, 0, 1, 0),
        ("0", 100_010, 100_010, 1, 100_010),
        ("0", 10_010, 10_010, 1, 10_010),
        ("1", 10_010, 10_010, 1, 10_010),
    ]
