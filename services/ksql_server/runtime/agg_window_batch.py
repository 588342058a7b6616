"""A batch of records through a TUMBLING/HOPPING aggregation, per window instead of per record.

runtime/windows.py's `WindowedAggregation.add` takes one record at a time: it reads the stream
time from the store, assigns the record's windows, drops those already closed, reads, folds and
writes each window's accumulators and writes the stream time back. Under the record cache
(runtime/agg_batch.py) only the last change of each window per batch is emitted, so the same
result comes from one pass that tracks the stream time record by record (a window is late
against the stream time *at its record*, exactly as `add` decides) and collects each window's
records, then one store read, fold and write per window and one write of the stream time. The
changes come in the order of each window's last record (windows of one record in start order):
`last_per_key` of `add`'s changes. EMIT FINAL and SESSION windows keep the per-record machine.
"""

from __future__ import annotations

from typing import Any

from services.ksql_server.runtime.agg_batch import fold_many
from services.ksql_server.runtime.windows import Change


def window_changes(op: Any, pres: list[tuple[Any, ...]], stamps: list[int]) -> list[Change]:
    """The last change per window of a batch; `op` is a WindowedAggregateOperator."""
    machine, n_group = op.machine, op.n_group
    window = machine.window
    machine._meta = None  # read from the store: a rolled-back store rolls the stream time back
    meta = machine.meta
    stream_time, last_start, seen = meta.stream_time, meta.last_start_put, False
    size, advance = window.size_ms, window.advance_ms
    grace = stream_time - window.close_time(stream_time)  # close = stream time - grace
    windows: dict[tuple[Any, ...], list[int]] = {}
    for i, pre in enumerate(pres):
        group = pre[:n_group]
        if None in group and any(g is None for g in group):
            op._null_key(None)
            continue
        seen = True
        ts = stamps[i]
        if ts > stream_time:
            stream_time = ts
        close = stream_time - grace
        # window.windows_for(ts), inlined: this loop runs for every record
        start = (max(0, ts - size + advance) // advance) * advance
        while start <= ts:
            end = start + size
            if end > close:  # else late: the window closed (grace passed)
                key = (*group, start, end)
                found = windows.get(key)
                if found is None:
                    windows[key] = [i]
                else:
                    found.append(i)
                if start > last_start:
                    last_start = start
            start += advance
    if not seen:
        return []
    meta.stream_time, meta.last_start_put = stream_time, last_start
    changes = []
    for key, indexes in sorted(windows.items(), key=lambda kv: (kv[1][-1], kv[0][-2])):
        old = machine._load(key)
        accs = list(machine.initial() if old is None else old[0])
        fold_many(op.functions, op.getters, accs, [pres[i] for i in indexes], op._log)
        new_ts = max(stamps[i] for i in indexes)
        if old is not None:
            new_ts = max(new_ts, old[1])
        machine._put(key, accs, new_ts)
        changes.append(Change(key[:-2], key[-2], key[-1], accs, new_ts))
    machine._save_meta()
    return changes


__all__ = ["window_changes"]
