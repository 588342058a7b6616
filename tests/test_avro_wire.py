"""The Confluent wire format and the writer-schema cache: each rejection with its code, and an
unknown schema id (a bad record) told apart from an unreachable registry (retry the batch)."""

from __future__ import annotations

import struct

import pytest
from test_avro_decoder import FakeRegistry, frame
from test_scorer_support import input_schema, make_records

from services.common.avro.codec import AvroDecoder
from services.common.avro.decoder import FeatureDecoder
from services.common.avro.schemas import WriterSchemas
from services.common.avro.wire import (
    HEADER,
    WireFormatError,
    frame_values,
    header_of,
    split_header,
)
from services.common.errors import RecordRejected, ServiceUnavailable


def test_header_is_magic_byte_and_big_endian_id() -> None:
    assert header_of(0x01020304) == b"\x00\x01\x02\x03\x04"
    schema_id, body = split_header(header_of(7) + b"body")
    assert schema_id == 7 and bytes(body) == b"body"


@pytest.mark.parametrize(
    ("value", "code", "text"),
    [
        (None, "null_record", "record is null"),
        (b"\x00\x00", "framing", "value too short for the Confluent wire format"),
        (b"\xff" + bytes(8), "magic_byte", "unknown magic byte 255"),
    ],
)
def test_split_header_and_batch_framing_reject_alike(
    value: bytes | None, code: str, text: str
) -> None:
    """The one-value and the batch form give the same rejection: one code, one text."""
    with pytest.raises(WireFormatError) as caught:
        split_header(value)
    assert isinstance(caught.value, RecordRejected)
    assert (caught.value.code, str(caught.value)) == (code, text)
    framing = frame_values([header_of(1) + b"x", value])
    [(index, why)] = framing.rejected()
    assert (index, why.code, str(why)) == (1, code, text)
    assert [(i, ix.tolist()) for i, ix in framing.by_schema()] == [(1, [0])]


def test_unknown_id_is_a_rejection_and_is_not_asked_again() -> None:
    registry = FakeRegistry({1: input_schema()})
    schemas = WriterSchemas(registry)  # type: ignore[arg-type]
    assert schemas.get(1).plans is not None
    with pytest.raises(WireFormatError) as caught:
        schemas.get(5)
    assert caught.value.code == "schema_id" and str(caught.value) == "unknown schema id 5"
    calls = registry.calls
    with pytest.raises(WireFormatError):
        schemas.get(5)
    schemas.get(1)
    assert registry.calls == calls  # both answers are cached


def test_unreachable_registry_is_service_unavailable_not_a_rejection() -> None:
    registry = FakeRegistry({1: input_schema()}, down=True)
    schemas = WriterSchemas(registry, retries=1)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable) as caught:
        schemas.get(1)
    assert not isinstance(caught.value, RecordRejected)
    assert caught.value.code == "registry_unreachable"
    assert registry.calls == 2  # tried again once
    registry.down = False
    assert schemas.get(1).schema_id == 1  # not remembered as unknown


@pytest.mark.parametrize("label_field", [None, "CLASS"])
def test_registry_down_fails_the_batch_instead_of_dead_lettering_it(
    label_field: str | None,
) -> None:
    decoder = FeatureDecoder(FakeRegistry({}, down=True), label_field=label_field, retries=0)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable):
        decoder.decode([HEADER.pack(0, 1) + struct.pack(">d", 1.0)])


def test_record_decoder_gives_records_and_the_same_rejections() -> None:
    schema = input_schema()
    record = make_records(1)[0]
    decoder = AvroDecoder(FakeRegistry({1: schema}))  # type: ignore[arg-type]
    assert decoder.decode(frame(schema, record)) == record
    out = decoder.decode_batch([frame(schema, record)[:-2], frame(schema, record, 9), None])
    codes = [why.code for why in out if isinstance(why, WireFormatError)]
    assert codes == ["avro", "schema_id", "null_record"]
