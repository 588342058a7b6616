"""ksql/examples/40_velocity.sql on the real stack, checked against pandas.

The example (with its names suffixed so the test cannot meet another run) is applied through
ksql-python-ng, a small DELIMITED source with known timestamps is produced, and the three tables
are read back with pull queries (plain HTTP `/query`, and `client.query` for one user's windows)
and compared with the windows computed here with pandas: count and sum per user in 10-minute
tumbling and 1-hour/10-minute hopping windows, and the last 5 amounts per user.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from confluent_kafka import Producer

from services.ksql_server.rest.client import split_statements

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NAMES = (
    "creditcardfraud_source",
    "creditcardfraud_amounts",
    "user_velocity_10m",
    "user_velocity_1h",
    "user_last_amounts",
)
T0 = 1_700_000_000_000
MINUTE = 60_000


def _script(suffix: str) -> str:
    first = split_statements((ROOT / "ksql/01_source.sql").read_text())[0]
    text = first + (ROOT / "ksql/examples/40_velocity.sql").read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("SET "))
    for name in NAMES:
        text = re.sub(rf"\b{name}\b", f"{name}_{suffix}", text, flags=re.IGNORECASE)
    return text


def _pull(url: str, sql: str) -> list[list[Any]]:
    r = httpx.post(f"{url}/query", json={"ksql": sql, "streamsProperties": {}}, timeout=60)
    assert r.status_code == 200, r.text
    return [m["row"]["columns"] for m in r.json() if "row" in m]


def _expected(df: pd.DataFrame, size: int, advance: int) -> list[list[Any]]:
    rows = []
    for start in range((T0 // advance - size // advance) * advance, T0 + 80 * MINUTE, advance):
        win = df[(df.ts >= start) & (df.ts < start + size)]
        for user, g in win.groupby("user"):
            rows.append([user, start, start + size, len(g), float(g.amount.sum())])
    return sorted(rows)


def _until(read: Any, want: list[list[Any]], timeout: float = 60.0) -> list[list[Any]]:
    deadline = time.monotonic() + timeout
    got = sorted(read())
    while got != want and time.monotonic() < deadline:
        time.sleep(0.5)
        got = sorted(read())
    return got


def test_velocity_tables_match_pandas(ksql_url: str, kafka_bootstrap: str, unique: str) -> None:
    from ksql import KSQLAPI  # type: ignore[attr-defined]

    client = KSQLAPI(ksql_url)
    client.ksql(_script(unique), stream_properties={"auto.offset.reset": "earliest"})
    src = f"creditcardfraud_source_{unique}"
    try:
        df = pd.DataFrame(
            {
                "user": [f"u{i % 4}" for i in range(48)],
                "amount": [float(i % 11) + 0.5 for i in range(48)],
                "ts": [T0 + i * 3 * MINUTE // 2 for i in range(48)],  # 72 minutes
            }
        )
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i, r in df.iterrows():
            fields = [str(i), "2024-01-01", r.user, "0", *["0.0"] * 28, str(r.amount), '"0"']
            producer.produce(src, key=str(i), value=",".join(fields), timestamp=int(r.ts))
        producer.flush(30)

        t10, t1h = f"USER_VELOCITY_10M_{unique}".upper(), f"USER_VELOCITY_1H_{unique}".upper()
        tumbling = _expected(df, 10 * MINUTE, 10 * MINUTE)
        assert _until(lambda: _pull(ksql_url, f"SELECT * FROM {t10};"), tumbling) == tumbling
        hopping = _expected(df, 60 * MINUTE, 10 * MINUTE)
        assert _until(lambda: _pull(ksql_url, f"SELECT * FROM {t1h};"), hopping) == hopping

        last = f"USER_LAST_AMOUNTS_{unique}".upper()
        counts = [[u, 12] for u in ("u0", "u1", "u2", "u3")]
        rows = _until(lambda: [r[::2] for r in _pull(ksql_url, f"SELECT * FROM {last};")], counts)
        assert rows == counts
        for user, amounts, _n in _pull(ksql_url, f"SELECT * FROM {last};"):
            assert len(amounts) == 5 and set(amounts) <= set(df[df.user == user].amount)

        # one user's windows from a notebook: ksql-python-ng's client.query, rows as dicts
        sql = f"SELECT * FROM {t10} WHERE `USER` = 'u1' AND WINDOWSTART >= {T0};"
        got = [r for r in client.query(sql, use_http2=True, parse=True) if isinstance(r, dict)]
        want = [r for r in tumbling if r[0] == "u1" and r[1] >= T0]
        assert (
            sorted(
                [d["USER"], d["WINDOWSTART"], d["WINDOWEND"], d["TX_COUNT"], d["AMOUNT_SUM"]]
                for d in got
            )
            == want
        )
        r = httpx.post(f"{ksql_url}/query", json={"ksql": sql}, timeout=60)
        header = r.json()[0]["header"]
        assert header["schema"].startswith("`USER` STRING KEY, `WINDOWSTART` BIGINT KEY")
    finally:
        for t in ("USER_LAST_AMOUNTS", "USER_VELOCITY_1H", "USER_VELOCITY_10M"):
            client.ksql(f"DROP TABLE IF EXISTS {t}_{unique} DELETE TOPIC;")
        for s in ("CREDITCARDFRAUD_AMOUNTS", "CREDITCARDFRAUD_SOURCE"):
            client.ksql(f"DROP STREAM IF EXISTS {s}_{unique} DELETE TOPIC;")
