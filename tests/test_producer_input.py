"""The CSV reader on hostile input: over-long lines (refused with their first bytes and length,
read in bounded chunks), NUL bytes, invalid UTF-8, binary garbage, header-only and non-CSV files.
Nothing here may end in anything but records, refused lines, or a one-line FraudstreamError."""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest
from test_producer_csv import read_all
from typer.testing import CliRunner

from services.cli import app
from services.common.dlq import fit_dead_letter, read_dlq_headers
from services.common.errors import FraudstreamError
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv
from services.producer.limits import LONG_LINE_KEEP_BYTES
from services.producer.rows import Layout, check_line


def _rows(tmp_path: Path, rows: int = 20, seed: int = 3) -> list[bytes]:
    """Header + rows of a generated Kaggle-layout file, without line ends."""
    path = tmp_path / "rows.csv"
    write_csv(path, rows, seed=seed)
    return path.read_bytes().splitlines()


def _padded(line: bytes, size: int) -> bytes:
    """The same row, still valid, made exactly `size` bytes long by zeros after Amount's point."""
    fields = line.split(b",")
    amount = fields[29] if b"." in fields[29] else fields[29] + b"."
    fields[29] = amount + b"0" * (size - len(line) - (len(amount) - len(fields[29])))
    padded = b",".join(fields)
    assert len(padded) == size
    return padded


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("block_bytes", [1 << 20, 4096, 300])
def test_line_over_the_limit_is_refused_with_its_start_and_length(
    tmp_path: Path, ending: bytes, block_bytes: int
) -> None:
    lines = _rows(tmp_path)
    limit = 5000
    lines[4] = b"7," + b"x" * 20_000  # line 5: far over
    lines[9] = _padded(lines[9], limit)  # line 10: exactly at the limit, a record
    lines[12] = _padded(lines[12], limit + 1)  # line 13: one byte over
    path = tmp_path / "long.csv"
    path.write_bytes(ending.join(lines) + ending)
    got = read_all(CsvSource(path, block_bytes=block_bytes, max_line_bytes=limit))
    assert [(b.line, b.size, b.truncated) for b in got.bad] == [
        (5, 20_002, True),
        (13, limit + 1, True),
    ]
    assert got.bad[0].raw == lines[4][:LONG_LINE_KEEP_BYTES]
    assert got.bad[1].raw == lines[12][:LONG_LINE_KEEP_BYTES]
    assert got.bad[0].reason == "line of 20002 bytes is over the limit of 5000 bytes"
    assert {b.code for b in got.bad} == {"line_too_long"}
    assert len(got.values) == 20 - 2
    assert any(v.endswith(lines[9]) for v in got.values)
    assert got.keys == [str(n - 1).encode() for n in range(2, 22) if n not in (5, 13)]


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n"])
def test_long_last_line_with_or_without_line_end(tmp_path: Path, ending: bytes) -> None:
    lines = _rows(tmp_path, rows=3)
    path = tmp_path / "tail.csv"
    path.write_bytes(b"\n".join(lines) + b"\n" + b"9" * 3000 + ending)
    for block_bytes in (100, 1 << 20):
        got = read_all(CsvSource(path, block_bytes=block_bytes, max_line_bytes=1000))
        assert [(b.line, b.size) for b in got.bad] == [(5, 3000)]
        assert len(got.values) == 3


def test_progress_counts_every_byte_of_the_file(tmp_path: Path) -> None:
    lines = _rows(tmp_path)
    lines[7] = b"z" * 50_000
    path = tmp_path / "p.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    for block_bytes in (256, 1 << 20):
        source = CsvSource(path, block_bytes=block_bytes, max_line_bytes=2000)
        assert sum(b.bytes_read for b in source.batches()) == path.stat().st_size


def test_hundred_megabyte_line_without_newline_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """A 100 MB line must cost the reader its limit (1 MB), not 100 MB."""
    lines = _rows(tmp_path, rows=5)
    path = tmp_path / "huge.csv"
    size = 100 * 2**20
    with path.open("wb") as out:
        out.write(b"\n".join(lines) + b"\n")
        chunk = b"1234567,," * (2**20 // 9 + 1)
        written = 0
        while written < size:
            piece = chunk[: size - written]
            out.write(piece)
            written += len(piece)
    tracemalloc.start()
    try:
        got = read_all(CsvSource(path))
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(b.line, b.size, len(b.raw)) for b in got.bad] == [(7, size, LONG_LINE_KEEP_BYTES)]
    assert len(got.values) == 5
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB while reading a 100 MiB line"


def test_file_that_is_one_long_line_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "nonl.csv"
    path.write_bytes(b"x," * 400_000)
    with pytest.raises(FraudstreamError, match="not a transactions CSV"):
        CsvSource(path)


def test_long_first_line_does_not_hide_the_layout(tmp_path: Path) -> None:
    lines = _rows(tmp_path, rows=4)[1:]
    path = tmp_path / "first.csv"
    path.write_bytes(b"q" * 200_000 + b"\n" + b"\n".join(lines) + b"\n")
    source = CsvSource(path)
    assert source.layout is Layout.KAGGLE and not source.has_header
    got = read_all(source)
    assert [(b.line, b.size) for b in got.bad] == [(1, 200_000)]
    assert got.keys == [b"2", b"3", b"4", b"5"]  # Kaggle Id = line number without a header


def test_nul_bytes_and_invalid_utf8_are_refused_with_their_position(tmp_path: Path) -> None:
    ext = tmp_path / "e.csv"
    write_csv(ext, 8, seed=5, extended=True)
    lines = ext.read_bytes().splitlines()
    lines[1] = lines[1].replace(b',"', b',"\x00', 1)  # NUL inside Timestamp
    lines[3] = lines[3].replace(b',"', b',"K\xff', 1)  # invalid UTF-8 inside Timestamp
    lines[5] = lines[5][:6] + b"\xc3" + lines[5][6:]  # a cut multi-byte sequence
    path = tmp_path / "enc.csv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = read_all(CsvSource(path))
    reasons = {b.line: b.reason for b in got.bad}
    assert set(reasons) == {2, 4, 6}
    assert reasons[2].startswith("NUL byte at byte ")
    assert reasons[4].startswith("invalid UTF-8 at byte ")
    assert reasons[6] == "invalid UTF-8 at byte 7"
    assert {b.code for b in got.bad} == {"csv_encoding"}
    assert len(got.values) == 5 and all(v.decode() for v in got.values)


def test_bulk_check_agrees_with_the_per_line_rule_on_binary_garbage(tmp_path: Path) -> None:
    """Fields replaced by random bytes (NUL, quotes, invalid UTF-8, CR): the fast path refuses
    exactly what the per-line rule refuses, and never raises."""
    path = tmp_path / "e.csv"
    write_csv(path, 400, seed=8, extended=True)
    rng = random.Random(11)
    lines = path.read_bytes().splitlines()
    for i in rng.sample(range(len(lines)), 80):
        fields = lines[i].split(b",")
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        fields[rng.randrange(len(fields))] = noise.replace(b",", b"").replace(b"\n", b"")
        lines[i] = b",".join(fields)
    path.write_bytes(b"\n".join(lines) + b"\n")
    for block_bytes in (2048, 1 << 20):
        got = read_all(CsvSource(path, block_bytes=block_bytes))
        expected = [n for n, line in enumerate(lines, 1) if check_line(line, Layout.EXTENDED)[0]]
        assert [b.line for b in got.bad] == expected
        assert len(got.values) == len(lines) - len(expected)


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_never_raise_anything_but_a_user_error(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    alphabet = bytes(range(256)) + b",,,,,,,,\n\r0123456789."
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 20_000))))
    try:
        source = CsvSource(path, block_bytes=1024, max_line_bytes=2000)
    except FraudstreamError:
        return
    got = read_all(source)
    assert all(len(b.raw) <= 2000 for b in got.bad)


def test_garbage_with_the_right_field_count_goes_to_the_dlq_line_by_line(tmp_path: Path) -> None:
    rng = random.Random(4)
    lines = [
        b",".join(bytes(rng.randrange(256) for _ in range(3)).replace(b",", b"") for _ in range(31))
        for _ in range(50)
    ]
    path = tmp_path / "bin31.csv"
    path.write_bytes(b"\n".join(line.replace(b"\n", b"") for line in lines) + b"\n")
    source = CsvSource(path)
    assert source.layout is Layout.KAGGLE
    got = read_all(source)
    assert not got.values and len(got.bad) >= 45


def test_utf16_and_non_csv_files_are_user_errors(tmp_path: Path) -> None:
    utf16 = tmp_path / "u16.csv"
    utf16.write_bytes("Time,V1\n0,1\n".encode("utf-16"))
    json_file = tmp_path / "data.json"
    json_file.write_text('{"Time": 0, "V1": 1.5}\n')
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"\n\n  \n")
    for path, message in [(utf16, "UTF-16"), (json_file, "31 fields"), (empty, "is empty")]:
        with pytest.raises(FraudstreamError, match=message):
            CsvSource(path)
    with pytest.raises(FraudstreamError, match="no such file"):
        CsvSource(tmp_path)


def test_header_only_file_gives_no_records(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_bytes(_rows(tmp_path, rows=1)[0] + b"\r\n\r\n")
    source = CsvSource(path)
    assert source.has_header
    got = read_all(source)
    assert not got.values and not got.bad


def test_cli_refuses_a_zero_line_limit() -> None:
    result = CliRunner().invoke(
        app, ["produce", "--csv", "x.csv", "--max-line-bytes", "0"], catch_exceptions=True
    )
    assert result.exit_code == 2 and "--max-line-bytes" in result.output


def test_dead_letter_is_cut_to_fit_and_says_so() -> None:
    headers = [("fraudstream.error", b"line 3: too long")]
    value, key, out = fit_dead_letter(b"v" * 5000, None, list(headers), max_record_bytes=2000)
    assert value is not None and len(value) + sum(len(n) + len(v or b"") for n, v in out) < 2000
    found = read_dlq_headers(out)  # type: ignore[arg-type]
    assert found["truncated"] == "true" and found["original.size"] == "5000"
    assert value == b"v" * len(value) and key is None

    kept, _key, plain = fit_dead_letter(b"short", b"k", list(headers))
    assert kept == b"short" and plain == headers

    start, _key, marked = fit_dead_letter(b"abc", None, list(headers), original_size=10**8)
    assert start == b"abc" and read_dlq_headers(marked)["original.size"] == str(10**8)  # type: ignore[arg-type]

    _v, big_key, keyed = fit_dead_letter(b"v", b"k" * 10_000, list(headers), 4000)
    assert big_key is not None and len(big_key) == 1024
    assert read_dlq_headers(keyed)["key.original.size"] == "10000"  # type: ignore[arg-type]
