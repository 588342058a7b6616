"""Windowed key framing (formats/windowed.py): Kafka Streams' byte layouts and the WITH rules."""

from __future__ import annotations

import pytest

from services.ksql_server.errors import KsqlError
from services.ksql_server.formats.windowed import (
    WindowInfo,
    parse_duration,
    session_windowed,
    split_windowed,
    time_windowed,
    window_from_properties,
    wrap_key_deserializer,
    wrap_key_serializer,
)


def test_time_windowed_layout() -> None:
    """TimeWindowedSerializer: key bytes, then the start as a big-endian long."""
    data = time_windowed(b"k1", 30_000)
    assert data == b"k1" + bytes.fromhex("0000000000007530")
    assert split_windowed(data, WindowInfo("TUMBLING", 30_000)) == (b"k1", 30_000, 60_000)


def test_session_windowed_layout() -> None:
    """SessionWindowedSerializer: key bytes, then end, then start (big-endian longs)."""
    data = session_windowed(b"\x00\x00\x00\x07", 100, 1500)
    assert data[4:12] == (1500).to_bytes(8, "big") and data[12:] == (100).to_bytes(8, "big")
    assert split_windowed(data, WindowInfo("SESSION")) == (b"\x00\x00\x00\x07", 100, 1500)


def test_negative_start_and_short_keys() -> None:
    assert split_windowed(time_windowed(b"", -5), WindowInfo("HOPPING", 10)) == (b"", -5, 5)
    with pytest.raises(KsqlError):
        split_windowed(b"\x00" * 15, WindowInfo("SESSION"))


def test_wrapped_serdes_roundtrip() -> None:
    window = WindowInfo("TUMBLING", 1000)
    ser = wrap_key_serializer(lambda cols: str(cols[0]).encode(), window)
    de = wrap_key_deserializer(lambda b: None if b is None else [b.decode()], window)
    assert de(ser(["abc"], 2000, 3000)) == (["abc"], 2000, 3000)
    assert de(None) is None


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, None),
        ({"WINDOW_TYPE": "Tumbling", "WINDOW_SIZE": "30 seconds"}, WindowInfo("TUMBLING", 30_000)),
        ({"WINDOW_TYPE": "HOPPING", "WINDOW_SIZE": "1 SECOND"}, WindowInfo("HOPPING", 1000)),
        ({"WINDOW_TYPE": "session"}, WindowInfo("SESSION")),
    ],
)
def test_window_properties(props: dict[str, str], expected: WindowInfo | None) -> None:
    assert window_from_properties(props) == expected


@pytest.mark.parametrize(
    ("props", "message"),
    [
        (
            {"WINDOW_TYPE": "TUMBLING", "WINDOW_SIZE": "30 bobs"},
            "Configuration WINDOW_SIZE is invalid: Invalid duration: '30 bobs'. "
            "Unknown time unit: 'BOBS'",
        ),
        ({"WINDOW_TYPE": "SESSION", "WINDOW_SIZE": "1 SECOND"}, "should not be set for SESSION"),
        ({"WINDOW_TYPE": "HOPPING"}, "HOPPING windows require 'WINDOW_SIZE'"),
    ],
)
def test_window_property_errors(props: dict[str, str], message: str) -> None:
    with pytest.raises(KsqlError, match=message.replace("(", r"\(")):
        window_from_properties(props)


def test_parse_duration() -> None:
    assert parse_duration("2 HOURS") == 7_200_000
    assert parse_duration("1 millisecond") == 1
