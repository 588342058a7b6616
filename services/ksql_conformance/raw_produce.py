"""Producing records stamped with timestamp 0, which librdkafka cannot do.

ksqlDB's test cases stamp most inputs 0, and librdkafka (confluent-kafka) reads a timestamp of 0
as "now". Where the time matters (windows, ROWTIME), the harness sends such records itself, as
one Kafka Produce request (v3, record batch v2, uncompressed, CreateTime) per record, straight
to the partition's leader, so the broker stores exactly the timestamp the case gives.

Only what the harness needs: plaintext listeners, acks=all, the partition chosen as
librdkafka's default partitioner chooses it (CRC32 of the key; partition 0 for a null key).
"""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Sequence
from typing import Any

from services.common.schemas.protobuf import zigzag_varint

PRODUCE_API_KEY = 0
PRODUCE_VERSION = 3
CLIENT_ID = b"fraudstream-qtt"


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum of Kafka's record batch v2."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _bytes_field(data: bytes | None) -> bytes:
    return zigzag_varint(-1) if data is None else zigzag_varint(len(data)) + data


def encode_batch(
    key: bytes | None,
    value: bytes | None,
    timestamp: int,
    headers: Sequence[tuple[str, bytes | None]] = (),
) -> bytes:
    """A one-record batch (magic 2) with `timestamp` as its CreateTime."""
    head = b"".join(
        zigzag_varint(len(k.encode())) + k.encode() + _bytes_field(v) for k, v in headers
    )
    body = (
        b"\x00"  # record attributes
        + zigzag_varint(0)  # timestamp delta
        + zigzag_varint(0)  # offset delta
        + _bytes_field(key)
        + _bytes_field(value)
        + zigzag_varint(len(headers))
        + head
    )
    record = zigzag_varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", 0, 0, timestamp, timestamp, -1, -1, -1, 1) + record
    crc = crc32c(after_crc)
    tail = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(tail)) + tail


def _string(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack(">h", len(raw)) + raw


class RawProducer:
    """Sends one record at a time over its own socket to a broker of the cluster."""

    def __init__(self, bootstrap: str, timeout_s: float = 20.0) -> None:
        host, _, port = bootstrap.split(",")[0].rpartition(":")
        self.timeout_s = timeout_s
        self._sock = socket.create_connection((host or "localhost", int(port)), timeout_s)
        self._correlation = 0

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RawProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, api_key: int, version: int, body: bytes) -> bytes:
        self._correlation += 1
        header = struct.pack(">hhi", api_key, version, self._correlation) + _string(CLIENT_ID)
        request = header + body
        self._sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", self._recv(4))[0]
        response = self._recv(size)
        if struct.unpack_from(">i", response)[0] != self._correlation:
            raise RuntimeError("Kafka response out of order")
        return response[4:]

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def partition_for(self, key: bytes | None, partitions: int) -> int:
        """librdkafka's consistent_random partitioner (null keys: partition 0 here)."""
        if key is None or partitions <= 1:
            return 0
        return zlib.crc32(key) % partitions

    def produce(
        self,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        timestamp: int,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> int:
        """Append one record; returns its offset. Raises on a broker error code."""
        batch = encode_batch(key, value, timestamp, headers)
        body = (
            struct.pack(">h", -1)  # transactional id: null
            + struct.pack(">hi", -1, int(self.timeout_s * 1000))  # acks=all, timeout
            + struct.pack(">i", 1)
            + _string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">ii", partition, len(batch))
            + batch
        )
        resp = self._call(PRODUCE_API_KEY, PRODUCE_VERSION, body)
        pos = 4  # topics array length
        name_len = struct.unpack_from(">h", resp, pos)[0]
        pos += 2 + name_len + 4  # name, partitions array length
        _part, error, offset = struct.unpack_from(">ihq", resp, pos)
        if error:
            raise RuntimeError(f"Produce to {topic}[{partition}] failed: Kafka error {error}")
        return int(offset)
