"""The users behind the generated transactions: datagen's users CSV, and `produce --users`
replaying it into a topic keyed by USERID (the demo's USERS table)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import TopicPartition
from typer.testing import CliRunner

from services.cli import app
from services.common.kafka import delete_topics, make_admin, make_consumer
from services.producer.datagen import write_csv
from services.producer.errors import ProducerError
from services.producer.layout import USERS, user_indices
from services.producer.users import (
    USER_COLUMNS,
    make_user,
    produce_users,
    read_users_csv,
    user_record,
    users_for,
    users_path,
    write_users_csv,
)


def test_a_user_depends_on_seed_and_index_only() -> None:
    assert make_user(3, seed=1) == make_user(3, seed=1)
    assert users_for([5, 3, 3], seed=1) == [make_user(3, seed=1), make_user(5, seed=1)]
    everyone = users_for(range(len(USERS)), seed=0)
    assert [u.userid for u in everyone] == list(USERS)
    assert any(u != v for u, v in zip(everyone, users_for(range(len(USERS)), seed=1), strict=True))


def test_some_but_not_all_users_are_premium() -> None:
    for seed in range(3):
        cities = [u.city for u in users_for(range(len(USERS)), seed)]
        premium = [c for c in cities if c.startswith("Premium ")]
        assert 0.1 <= len(premium) / len(cities) <= 0.45, (seed, premium)
        levels = {u.level for u in users_for(range(len(USERS)), seed)}
        assert levels <= {"Bronze", "Silver", "Gold", "Platinum"} and len(levels) >= 3


def test_datagen_writes_the_users_its_rows_name(tmp_path: Path) -> None:
    out = tmp_path / "tx.csv"
    result = write_csv(out, 3000, seed=4, extended=True)
    named = {line.split(",")[2].strip('"') for line in out.read_text().splitlines()}
    assert {USERS[i] for i in result.user_indices} == named
    # the Kaggle layout names the same users: produce adds them by the same row-id hash
    kaggle = write_csv(tmp_path / "k.csv", 3000, seed=4)
    assert kaggle.user_indices == result.user_indices
    ids = np.arange(1, 3001)
    assert set(np.unique(user_indices(ids)).tolist()) == set(result.user_indices)


def test_cli_datagen_writes_users_beside_and_keeps_its_last_line(tmp_path: Path) -> None:
    out = tmp_path / "gen.csv"
    result = CliRunner().invoke(app, ["datagen", "--rows", "500", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("wrote 500 rows") and lines[-1].endswith(f"to {out}")
    users_file = users_path(out)
    assert users_file == tmp_path / "gen_users.csv"
    with users_file.open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == USER_COLUMNS
    assert lines[-2] == f"wrote {len(rows) - 1} users to {users_file}"
    again = tmp_path / "again.csv"
    result = CliRunner().invoke(
        app, ["datagen", "--rows", "500", "--out", str(again), "--no-users"]
    )
    assert result.exit_code == 0 and not users_path(again).exists()


def test_users_csv_round_trip_and_record_layout(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    assert write_users_csv(path, users_for([0, 1, 2], seed=2)) == 3
    rows = list(read_users_csv(path))
    assert [r["USERID"] for r in rows] == list(USERS[:3])
    key, value = user_record(rows[0])
    assert key == USERS[0].encode()
    assert json.loads(value) == rows[0] and set(json.loads(value)) == set(USER_COLUMNS)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("CITY,LEVEL\nBerlin,Gold\n", "no USERID column"),
        ("USERID,CITY\n,Berlin\n", "empty USERID"),
        ("USERID,CITY\nKai,Berlin,extra\n", "malformed user row"),
        ("USERID,CITY\nKai," + "x" * 2000 + "\n", "malformed user row"),
    ],
)
def test_bad_users_files_are_refused(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ProducerError, match=reason):
        list(read_users_csv(path))


def test_produce_needs_csv_or_users() -> None:
    result = CliRunner().invoke(app, ["produce"])
    assert result.exit_code != 0
    assert "give --csv, --users or both" in result.output + str(result.exception)


@pytest.mark.slow
def test_users_replayed_keyed_by_userid(tmp_path: Path, topic_name: str, unique: str) -> None:
    path = tmp_path / "users.csv"
    users = users_for(range(len(USERS)), seed=3)
    write_users_csv(path, users)
    try:
        result = produce_users(path, topic=topic_name)
        assert result.records == len(USERS)
        consumer = make_consumer(f"users-{unique}")
        consumer.assign([TopicPartition(topic_name, 0, 0)])
        got: dict[str, dict[str, str]] = {}
        deadline = time.monotonic() + 30
        try:
            while len(got) < len(USERS) and time.monotonic() < deadline:
                for msg in consumer.consume(100, timeout=0.5):
                    key, value = msg.key(), msg.value()
                    assert msg.error() is None and key is not None and value is not None
                    got[key.decode()] = json.loads(value)
        finally:
            consumer.close()
        assert got == {u.userid: dict(zip(USER_COLUMNS, u.row(), strict=True)) for u in users}
        meta = make_admin().list_topics(topic_name, timeout=10).topics[topic_name]
        assert len(meta.partitions) == 1
    finally:
        delete_topics([topic_name])
