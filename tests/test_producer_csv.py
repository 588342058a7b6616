"""CSV parsing for `fraudstream produce`: both layouts, the shared sample files, bad lines with
their line numbers, and the DELIMITED values the source topic gets."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.common.errors import FraudstreamError
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv
from services.producer.layout import BASE_TIME, USERS
from services.producer.replay import produce_csv
from services.producer.rows import BadLine, Layout, check_line

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SMALL = SHARED_DATA / "creditcard_small.csv"
EXTENDED = SHARED_DATA / "creditcard_extended.csv"


@dataclass
class Everything:
    """All batches of a source joined: what a whole replay would send and refuse."""

    keys: list[bytes] = field(default_factory=list)
    values: list[bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def read_all(source: CsvSource) -> Everything:
    whole = Everything()
    for batch in source.batches():
        whole.keys += batch.keys
        whole.values += batch.values
        whole.times += batch.times.tolist()
        whole.bad += batch.bad
    return whole


def test_shared_kaggle_sample_gets_id_timestamp_user() -> None:
    source = CsvSource(SMALL)
    assert source.layout is Layout.KAGGLE and source.has_header
    got = read_all(source)
    lines = SMALL.read_bytes().splitlines()[1:]
    assert not got.bad and len(got.values) == len(lines) == 999
    assert got.keys == [str(i).encode() for i in range(1, 1000)]
    for row_id, (value, line) in enumerate(zip(got.values, lines, strict=True), start=1):
        fields = next(csv.reader([value.decode()]))
        assert len(fields) == 34 and value.endswith(line) and value.endswith((b'"0"', b'"1"'))
        assert int(fields[0]) == row_id and fields[2] in USERS
        seconds = int(float(fields[3]))
        assert fields[1] == _iso(seconds)
        assert value.split(b",")[1].startswith(b'"')
    assert sum(v.endswith(b'"1"') for v in got.values) == 15


def _iso(seconds: int) -> str:
    from datetime import timedelta

    return (BASE_TIME + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_shared_extended_sample_is_sent_as_is() -> None:
    source = CsvSource(EXTENDED)
    assert source.layout is Layout.EXTENDED and not source.has_header
    got = read_all(source)
    lines = EXTENDED.read_bytes().splitlines()
    assert got.values == lines and not got.bad
    assert got.keys == [str(i).encode() for i in range(1, 11)]
    assert [v for v in got.values if v.endswith(b",")] == [lines[3]]  # the unlabelled row
    assert got.times == [0, 0, 1, 1, 1, 2, 2, 4, 7, 7]


def test_kaggle_replay_equals_the_extended_file_of_the_same_seed(tmp_path: Path) -> None:
    kaggle, extended = tmp_path / "k.csv", tmp_path / "e.csv"
    write_csv(kaggle, 3000, seed=9)
    write_csv(extended, 3000, seed=9, extended=True)
    assert read_all(CsvSource(kaggle)).values == extended.read_bytes().splitlines()


BAD_CASES = [
    (b"1,2,3", "expected 31 fields, found 3"),
    (b"", None),  # blank lines are skipped, not records
    (None, "non-numeric V3 'abc'"),
    (None, "empty Amount"),
    (None, "bad Class '7' (expected 0, 1 or empty)"),
    (None, "non-finite V28 'inf'"),
]


def _corrupt(line: bytes, reason: str) -> bytes:
    fields = line.split(b",")
    if "V3" in reason:
        fields[3] = b"abc"
    elif "Amount" in reason:
        fields[29] = b""
    elif "Class" in reason:
        fields[30] = b'"7"'
    elif "V28" in reason:
        fields[28] = b"inf"
    return b",".join(fields)


@pytest.mark.parametrize("block_bytes", [1 << 20, 700])
def test_bad_lines_reported_with_line_number_and_reason(tmp_path: Path, block_bytes: int) -> None:
    clean = tmp_path / "clean.csv"
    write_csv(clean, 40, seed=2)
    lines = clean.read_bytes().splitlines()
    expected_bad: list[tuple[int, str]] = []
    for offset, (raw, reason) in enumerate(BAD_CASES):
        at = 5 + offset * 6  # 0-based index in `lines`; file line number is at + 1
        if raw is None:
            lines[at] = _corrupt(lines[at], reason or "")
        else:
            lines.insert(at, raw)
        if reason:
            expected_bad.append((at + 1, reason))
    path = tmp_path / "dirty.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    got = read_all(CsvSource(path, block_bytes=block_bytes))
    assert [(b.line, b.reason) for b in got.bad] == expected_bad
    assert [b.code for b in got.bad] == ["csv_columns"] + ["csv_value"] * 4
    assert all(b.raw == path.read_bytes().splitlines()[b.line - 1] for b in got.bad)
    assert len(got.values) == 40 - 4  # four rows corrupted in place, two lines inserted
    assert all(v.count(b",") == 33 and not v.endswith(b"\r") for v in got.values)
    ids = [int(k) for k in got.keys]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_line_numbers_of_records(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    write_csv(path, 30, seed=1)
    lines = path.read_bytes().splitlines()
    lines[4] = b"broken"
    lines.insert(9, b"")
    path.write_bytes(b"\n".join(lines) + b"\n")
    for block_bytes in (1 << 20, 1500):
        numbered = []
        for batch in CsvSource(path, block_bytes=block_bytes).batches():
            numbered += [(batch.line_of(i), v) for i, v in enumerate(batch.values)]
        assert [n for n, _v in numbered] == [n for n in range(2, 33) if n not in (5, 10)]
        assert all(v.endswith(lines[n - 1]) for n, v in numbered)


def test_limit_keeps_only_the_bad_lines_before_it(tmp_path: Path) -> None:
    from services.producer.replay import _truncate

    path = tmp_path / "k.csv"
    write_csv(path, 30, seed=1)
    lines = path.read_bytes().splitlines()
    lines[4], lines[20] = b"broken", b"broken too"
    path.write_bytes(b"\n".join(lines) + b"\n")
    batch = next(iter(CsvSource(path).batches()))
    cut = _truncate(batch, 10)
    assert len(cut) == 10 and [b.line for b in cut.bad] == [5]
    assert _truncate(batch, 0).bad == [] and _truncate(batch, 100) is batch


def test_bulk_check_agrees_with_the_per_line_rule(tmp_path: Path) -> None:
    """Randomly damaged lines: the fast path must refuse exactly what the per-line rule refuses."""
    path = tmp_path / "e.csv"
    write_csv(path, 600, seed=4, extended=True)
    rng = random.Random(5)
    junk = [b"x", b"", b"1e400", b"nan", b'"', b"1,2", b" ", b"-", b"0x1", b'"2"', b"+1.5",
            b"99999999999999999999", b"3e9", b'"0"', b" 1 "]  # fmt: skip
    lines = path.read_bytes().splitlines()
    for i in rng.sample(range(len(lines)), 60):
        fields = lines[i].split(b",")
        fields[rng.randrange(len(fields))] = rng.choice(junk)
        lines[i] = b",".join(fields)
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = read_all(CsvSource(path, block_bytes=4096))
    expected = [n for n, line in enumerate(lines, 1) if check_line(line, Layout.EXTENDED)[0]]
    assert [b.line for b in got.bad] == expected
    assert len(got.values) == len(lines) - len(expected)
    assert 10 < len(expected) < 60


def test_byte_order_mark_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(SMALL.read_bytes().splitlines()[:4]))
    source = CsvSource(path)
    assert source.layout is Layout.KAGGLE and source.has_header
    got = read_all(source)
    assert got.keys == [b"1", b"2", b"3"] and not got.bad
    assert got.values[-1].endswith(SMALL.read_bytes().splitlines()[3])


def test_kaggle_file_without_header(tmp_path: Path) -> None:
    path = tmp_path / "nohdr.csv"
    path.write_bytes(b"\n".join(SMALL.read_bytes().splitlines()[1:6]) + b"\n")
    source = CsvSource(path)
    assert source.layout is Layout.KAGGLE and not source.has_header
    assert read_all(source).keys == [b"1", b"2", b"3", b"4", b"5"]


def test_unknown_layout_and_missing_file_are_user_errors(tmp_path: Path) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b,c\n1,2,3\n")
    runner = CliRunner()
    for path in (odd, tmp_path / "missing.csv"):
        result = runner.invoke(app, ["produce", "--csv", str(path)])
        assert result.exit_code != 0
        assert "31 fields" in str(result.exception) or "no such file" in str(result.exception)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rate": 10.0, "speedup": 2.0}, "exclude each other"),
        ({"rate": -1.0}, "must be positive"),
        ({"limit": -3}, "--limit"),
        ({"bootstrap": "127.0.0.1:1"}, "not reachable"),
    ],
)
def test_produce_refuses_bad_options_and_unreachable_broker(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(FraudstreamError, match=message):
        produce_csv(SMALL, "unused_topic", **options)  # type: ignore[arg-type]


def test_an_unreachable_broker_is_reported_once(capfd: pytest.CaptureFixture[str]) -> None:
    """The replay's producer is made before the probe (so its producer id is ready by the first
    record); its connection errors are held back until the probe has answered, so a broker that
    does not answer gives the probe's one error, not also a log line per producer retry."""
    with pytest.raises(FraudstreamError, match="not reachable"):
        produce_csv(SMALL, "unused_topic", bootstrap="127.0.0.1:1")
    err = capfd.readouterr().err
    assert "Connect to" not in err and "FAIL" not in err, err
