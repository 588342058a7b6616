"""The two CSV layouts and the columns the producer adds to the Kaggle one.

Kept in one place so `datagen --extended` and `produce` on a Kaggle file agree: the same row
gets the same `Id`, `Timestamp` and `User` whichever way it reaches the topic.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from services.common.topics import EXTENDED_COLUMNS, KAGGLE_COLUMNS

BASE_TIME = datetime(2013, 9, 1, tzinfo=UTC)
"""`Time` = 0 of a Kaggle-layout file is this instant. The real data set covers two days of
September 2013; its exact start is not published, so the first of the month at midnight UTC
stands in for it (a file's `Time` 3600 becomes `2013-09-01T01:00:00Z`)."""
BASE_SECONDS = int(BASE_TIME.timestamp())
"""BASE_TIME in seconds since the epoch."""

KAGGLE_FIELDS = len(KAGGLE_COLUMNS)  # 31
EXTENDED_FIELDS = len(EXTENDED_COLUMNS)  # 34

USERS: tuple[str, ...] = (
    "Kai", "Hans", "Flo", "Dirk", "Anna", "Lena", "Marc", "Sofia", "Jonas", "Mia",
    "Lukas", "Emma", "Paul", "Clara", "Felix", "Nina", "Tom", "Lea", "Ben", "Julia",
    "Max", "Sara", "Tim", "Laura", "Jan", "Eva", "Noah", "Ida", "Leon", "Greta",
    "Elias", "Maja", "Finn", "Hanna", "Luca", "Zoe", "David", "Alice", "Simon", "Rosa",
    "Oskar", "Pia", "Karl", "Ella", "Erik", "Nora", "Moritz", "Lina", "Anton", "Marie",
    "Theo", "Frida", "Henri", "Ronja", "Emil", "Tilda", "Jakob", "Vera", "Ole", "Wanda",
    "Rafael", "Yara", "Samuel", "Ines",
)  # fmt: skip
"""The pool of user names of generated rows and of Kaggle rows replayed by `produce`."""


def user_indices(ids: np.ndarray) -> np.ndarray:
    """Index into USERS per row id: a fixed hash, so a row keeps its user whichever path adds
    it (datagen --extended or produce on a Kaggle file).

    Multiplying by a large odd constant scatters consecutive ids; raising the resulting uniform
    share to a power gives the first users of the pool more rows than the last (the first user
    about six times as many as the last), as real card holders differ in activity.
    """
    mixed = (ids.astype(np.int64).astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(7)
    share = (mixed % np.uint64(1 << 20)).astype(np.float64) / float(1 << 20)
    return np.floor(len(USERS) * share**1.6).astype(np.int64)


def user_for_ids(ids: np.ndarray) -> np.ndarray:
    """User names (object array of str) per row id."""
    return np.asarray(USERS, dtype=object)[user_indices(ids)]


def iso_timestamps(seconds: np.ndarray) -> np.ndarray:
    """ISO-8601 UTC strings (`2013-09-01T00:00:00Z`) for seconds since BASE_TIME, vectorised."""
    instants = (seconds.astype(np.int64) + BASE_SECONDS).astype("datetime64[s]")
    return np.char.add(instants.astype("U19"), "Z")


def iso_seconds_bytes(seconds: np.ndarray) -> list[bytes]:
    """`2013-09-01T00:00:00` (no zone letter) as bytes per value: the producer's fast path."""
    instants = (seconds.astype(np.int64) + BASE_SECONDS).astype("datetime64[s]")
    return instants.astype("S19").tolist()  # type: ignore[no-any-return]
