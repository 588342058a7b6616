"""The harness's timestamp-0 producer (services/ksql_conformance/raw_produce.py), Kafka-free:
the checksum and the record-batch layout the broker validates."""

from __future__ import annotations

import struct

from services.ksql_conformance.raw_produce import crc32c, encode_batch


def test_crc32c_check_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283


def test_batch_layout() -> None:
    batch = encode_batch(b"k", b"v", 0, [("h", None)])
    base_offset, length, _epoch, magic, crc = struct.unpack_from(">qiibI", batch)
    assert base_offset == 0 and length == len(batch) - 12 and magic == 2
    assert crc == crc32c(batch[21:])
    _attrs, _last_delta, first_ts, max_ts = struct.unpack_from(">hiqq", batch, 21)
    assert first_ts == max_ts == 0
