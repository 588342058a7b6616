"""The card holders behind the transactions: the `users` topic the demo's per-user join reads.

`datagen` writes one row per user its transactions name (a users CSV beside the transactions
file) and `produce --users` replays that CSV into `users` as JSON values keyed by `USERID`, the
layout `ksql/examples/30_per_user_join.sql` declares (`USERID VARCHAR PRIMARY KEY, CITY,
LEVEL`). A user's attributes depend only on the seed and the user's place in the pool
(`layout.USERS`), never on which other users a file names, so two files of one seed agree about
every user they share. About a quarter of the users live in a `Premium …` city, the rows the
demo's `u.CITY LIKE 'Premium%'` keeps.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.topics import USERS_TOPIC
from services.producer.errors import ProducerError
from services.producer.layout import USERS

USER_COLUMNS: tuple[str, ...] = ("USERID", "CITY", "LEVEL", "SIGNUP_DATE")
"""The users CSV header and the JSON value's fields (USERID is also the record key)."""
CITIES: tuple[str, ...] = (
    "Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden",
)  # fmt: skip
PREMIUM_SHARE = 0.25
"""The share of users in a `Premium <city>` (the demo's join keeps only those)."""
LEVELS: tuple[str, ...] = ("Bronze", "Silver", "Gold", "Platinum")
LEVEL_WEIGHTS = (0.4, 0.3, 0.2, 0.1)
USERS_PARTITIONS = 1
"""`users` is created with one partition, as `ksql/examples/30_per_user_join.sql` declares it
(a real ksqlDB refuses a table whose topic exists with another partition count)."""
MAX_USERS = 100_000
"""A users file longer than this is refused: it is a lookup table, not a stream."""
MAX_FIELD_CHARS = 1_000


@dataclass(frozen=True)
class User:
    userid: str
    city: str
    level: str
    signup_date: str

    def row(self) -> tuple[str, str, str, str]:
        return (self.userid, self.city, self.level, self.signup_date)


def make_user(index: int, seed: int = 0) -> User:
    """The user at `index` of the pool, the same for a seed whatever else is generated."""
    rng = np.random.default_rng([seed, index])
    city = CITIES[int(rng.integers(len(CITIES)))]
    if rng.random() < PREMIUM_SHARE:
        city = f"Premium {city}"
    level = LEVELS[int(rng.choice(len(LEVELS), p=LEVEL_WEIGHTS))]
    signup = np.datetime64("2010-01-01") + np.timedelta64(int(rng.integers(0, 1300)), "D")
    return User(USERS[index], city, level, str(signup))


def users_for(indices: Iterable[int], seed: int = 0) -> list[User]:
    """The users at these pool indices, in pool order, each once."""
    return [make_user(i, seed) for i in sorted(set(indices))]


def users_path(transactions: Path) -> Path:
    """Where datagen puts the users of a transactions file: `x.csv` → `x_users.csv`."""
    return transactions.with_name(f"{transactions.stem}_users.csv")


def write_users_csv(path: Path, users: Iterable[User]) -> int:
    """Write the users CSV (header `USERID,CITY,LEVEL,SIGNUP_DATE`); returns the row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(USER_COLUMNS)
        for user in users:
            writer.writerow(user.row())
            count += 1
    return count


def read_users_csv(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a users CSV as column → text; a file without a USERID column, with an
    empty USERID, an over-long field or more than MAX_USERS rows is refused."""
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        reason = exc.strerror or exc
        raise ProducerError(f"cannot read {path}: {reason}", code="cannot_read") from exc
    with handle:
        reader = csv.reader(handle)
        header = [h.strip().upper() for h in next(reader, [])]
        if "USERID" not in header:
            raise ProducerError(f"{path} has no USERID column", code="bad_input")
        for number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if number - 1 > MAX_USERS:
                raise ProducerError(f"{path} holds more than {MAX_USERS} users", code="bad_input")
            if len(fields) != len(header) or any(len(f) > MAX_FIELD_CHARS for f in fields):
                raise ProducerError(f"{path} line {number}: malformed user row", code="bad_input")
            row = dict(zip(header, fields, strict=True))
            if not row["USERID"]:
                raise ProducerError(f"{path} line {number}: empty USERID", code="bad_input")
            yield row


def user_record(row: dict[str, str]) -> tuple[bytes, bytes]:
    """A user as the `users` topic holds it: key USERID (a KAFKA-format string), JSON value."""
    return row["USERID"].encode(), json.dumps(row, separators=(",", ":")).encode()


@dataclass(frozen=True)
class UsersResult:
    topic: str
    records: int
    seconds: float

    def summary(self) -> str:
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return f"produced {self.records} records in {self.seconds:.1f} s ({rate:.0f} rec/s)"


def produce_users(
    path: Path, topic: str = USERS_TOPIC, bootstrap: str | None = None
) -> UsersResult:
    """Replay a users CSV into `topic` (created with one partition if missing), keyed by
    USERID; the whole file is checked before the first record is sent."""
    # the Kafka client is loaded here, not at import: `datagen` writes the CSV without it
    from services.common.kafka import broker_topics, ensure_topic, make_producer

    rows = list(read_users_csv(path))
    ensure_topic(topic, USERS_PARTITIONS, bootstrap, known=broker_topics(bootstrap))
    started = time.monotonic()
    failed: list[str] = []

    def delivered(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    producer = make_producer(bootstrap, on_delivery=delivered)
    for row in rows:
        key, value = user_record(row)
        while True:
            try:
                producer.produce(topic, key=key, value=value)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
        producer.poll(0)
    remaining = producer.flush(60)
    if remaining or failed:
        raise ProducerError(
            f"{remaining + len(failed)} users were not delivered"
            + (f" (last error: {failed[-1]})" if failed else ""),
            code="not_delivered",
        )
    return UsersResult(topic, len(rows), time.monotonic() - started)
