"""The two CSV layouts and the columns the producer adds to the Kaggle one.

Kept in one place so `datagen --extended` and `produce` on a Kaggle file agree: the same row
gets the same `Id`, `Timestamp` and `User` whichever way it reaches the topic.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

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

USER_STEPS: tuple[int, ...] = (
    77936, 120194, 154860, 185364, 213106, 238827, 262981, 285871, 307709, 328653, 348826,
    368321, 387215, 405572, 423443, 440872, 457898, 474551, 490861, 506853, 522546, 537963,
    553118, 568028, 582707, 597167, 611421, 625477, 639347, 653038, 666559, 679918, 693121,
    706175, 719085, 731858, 744498, 757011, 769402, 781673, 793830, 805877, 817816, 829651,
    841386, 853024, 864567, 876019, 887381, 898657, 909848, 920958, 931987, 942939, 953815,
    964618, 975348, 986007, 996598, 1007122, 1017581, 1027975, 1038306,
)  # fmt: skip
"""`user_indices` as steps, for the compiled path (`_kaggle_records.c`), which has no numpy:
a row's user is how many of these its hash share (`user_indices`: one of `USER_SHARES`)
reaches. Stored, not computed at start-up (a million powers); tests/test_producer_bulk.py
recomputes them with `user_of_shares` over every share and compares."""
USER_SHARES = 1 << 20
"""The hash is taken modulo this many shares (`user_indices`)."""

if TYPE_CHECKING:
    import numpy as np


def user_indices(ids: np.ndarray) -> np.ndarray:
    """Index into USERS per row id: a fixed hash, so a row keeps its user whichever path adds
    it (datagen --extended or produce on a Kaggle file).

    Multiplying by a large odd constant scatters consecutive ids; raising the resulting uniform
    share to a power gives the first users of the pool more rows than the last (the first user
    about six times as many as the last), as real card holders differ in activity.
    """
    import numpy as np

    mixed = (ids.astype(np.int64).astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(7)
    return user_of_shares(mixed % np.uint64(USER_SHARES))


def user_of_shares(shares: np.ndarray) -> np.ndarray:
    """Index into USERS of each hash share (0 <= share < USER_SHARES), `user_indices`' last step."""
    import numpy as np

    share = shares.astype(np.float64) / float(USER_SHARES)
    return np.floor(len(USERS) * share**1.6).astype(np.int64)  # type: ignore[no-any-return]


def user_for_ids(ids: np.ndarray) -> np.ndarray:
    """User names (object array of str) per row id."""
    import numpy as np

    return np.asarray(USERS, dtype=object)[user_indices(ids)]


def iso_timestamps(seconds: np.ndarray) -> np.ndarray:
    """ISO-8601 UTC strings (`2013-09-01T00:00:00Z`) for seconds since BASE_TIME, vectorised."""
    import numpy as np

    instants = (seconds.astype(np.int64) + BASE_SECONDS).astype("datetime64[s]")
    return np.char.add(instants.astype("U19"), "Z")


def iso_seconds_bytes(seconds: np.ndarray) -> list[bytes]:
    """`2013-09-01T00:00:00` (no zone letter) as bytes per value: the producer's numpy path."""
    import numpy as np

    instants = (seconds.astype(np.int64) + BASE_SECONDS).astype("datetime64[s]")
    return instants.astype("S19").tolist()  # type: ignore[no-any-return]
