"""first_offsets / next_offsets: the offsets a consume-transform-produce loop rewinds to and
commits, read from a batch's edges."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message

from services.common.kafka import first_offsets, next_offsets


@dataclass
class Msg:
    """The three Message methods the helpers read."""

    p: int
    o: int
    err: object = None

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.o

    def error(self) -> object:
        return self.err


def messages(*items: Any) -> list[Message]:
    return cast(list[Message], list(items))


def test_edges_of_interleaved_partitions_skipping_error_events() -> None:
    batch = messages(
        Msg(1, 7), Msg(0, 0), Msg(0, 1), Msg(1, 8), Msg(2, 3), Msg(0, 2), Msg(9, 0, "eof")
    )
    assert first_offsets(batch, 3) == {1: 7, 0: 0, 2: 3}
    assert next_offsets(batch, 3) == {0: 3, 2: 4, 1: 9}


def test_a_partition_absent_from_the_batch_means_a_full_scan_not_a_wrong_answer() -> None:
    batch = messages(Msg(0, 5), Msg(0, 6), Msg(1, 2), Msg(0, 7))
    assert first_offsets(batch, 3) == {0: 5, 1: 2}
    assert next_offsets(batch, 3) == {0: 8, 1: 3}
    assert first_offsets([], 2) == {} and next_offsets([], 2) == {}
