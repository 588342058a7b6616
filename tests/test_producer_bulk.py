"""The producer's bulk check against its per-line rule: on clean and on mangled blocks, a line
becomes a record exactly when `check_line` accepts it, with the same Id and Time (the bulk
check may only hand lines on, never accept one the rule refuses)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.producer import csv_source, layout, numpy_rows
from services.producer.block_check import plain_block_times
from services.producer.csv_source import CsvSource
from services.producer.datagen import write_csv
from services.producer.numpy_rows import _plain_block, _plain_rows
from services.producer.rows import Batch, Layout, check_line

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
MANGLES = [
    b"e", b"E5", b"+", b"-", b"--", b".", b"..", b" ", b'"', b"x", b"", b",", b"inf", b"nan",
    b"1" * 400, b"\xff", b"1_0", b"0x1", b"9" * 12, b"-.5", b"5.", b"\xc3\xa9",
]  # fmt: skip


def _mangle(line: bytes, rng: random.Random) -> bytes:
    fields = line.split(b",")
    i = rng.randrange(len(fields))
    how = rng.randrange(3)
    piece = rng.choice(MANGLES)
    if how == 0:
        fields[i] = piece
    elif how == 1:
        at = rng.randrange(len(fields[i]) + 1)
        fields[i] = fields[i][:at] + piece + fields[i][at:]
    else:
        fields[i] = b'"' + fields[i] + b'"'
    return b",".join(fields)


def _reference(lines: list[bytes], layout: Layout) -> list[tuple[int, float] | None]:
    out: list[tuple[int, float] | None] = []
    for line in lines:
        refusal, row_id, time = check_line(line, layout)
        out.append(None if refusal is not None else (row_id, time))
    return out


@pytest.mark.parametrize("extended", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_check_agrees_with_the_line_rule(tmp_path: Path, extended: bool, seed: int) -> None:
    clean = tmp_path / "clean.csv"
    write_csv(clean, 3000, seed=seed, extended=extended)
    rng = random.Random(seed)
    raw = clean.read_bytes().split(b"\n")
    header = [] if extended else raw[:1]
    body = [line for line in (raw if extended else raw[1:]) if line]
    body = [_mangle(line, rng) if rng.random() < 0.2 else line for line in body]
    path = tmp_path / "mangled.csv"
    path.write_bytes(b"\n".join(header + body) + b"\n")
    source = CsvSource(path, block_bytes=64 * 1024)
    layout = source.layout
    expected = _reference(body, layout)
    got: list[tuple[int, float] | None] = [None] * len(body)
    first = 2 if header else 1
    for batch in source.batches():
        for k in range(len(batch)):
            line = batch.line_of(k) - first
            row_id = int(batch.keys[k]) if layout is Layout.EXTENDED else 0
            got[line] = (row_id, float(batch.times[k]))
    # blank lines (a mangle to ",,…" is not blank) and the header are not records
    if layout is Layout.KAGGLE:
        expected = [None if e is None else (0, e[1]) for e in expected]
    assert got == expected
    assert 0 < sum(e is None for e in expected) < len(body)


def test_shared_samples_take_the_fast_path() -> None:
    """The real data set's rows are nearly all plain numbers: at most 1 % of the shared samples'
    lines need the per-line rule (the Kaggle file writes a few tiny values with an exponent),
    which is what keeps `produce` near the bare loop."""
    for name in ("creditcard_small.csv", "creditcard_extended.csv"):
        path = SHARED_DATA / name
        if not path.exists():
            pytest.skip(f"{path} not present")
        source = CsvSource(path)
        lines = path.read_bytes().splitlines()[1 if source.has_header else 0 :]
        text = b"\n".join(line for line in lines if line.strip())
        checked = _plain_rows(text, source.layout)
        assert checked is not None, name
        assert (~checked[0]).sum() <= 0.01 * len(checked[0]), name
        if source.layout is Layout.KAGGLE:
            block = _plain_block(text, text.count(b"\n") + 1)
            assert block is not None and (block[0] == checked[0]).all(), name


_ROWS = [
    b"0,-1.359807,0.5,2.53,1.37,-0.33,0.46,0.23,0.09,0.36,0.09,-0.55,-0.61,-0.99,-0.31,1.46,"
    b'-0.47,0.20,0.02,0.40,0.25,-0.01,0.27,-0.11,0.06,0.12,-0.18,0.13,-0.02,149.62,"0"',
    b"406,-2.3122265423263,1.95199201064158,-1.60985073229769,3.9979055875468,-0.522187864667764,"
    b"-1.42654531920595,-2.53738730624579,1.39165724829804,-2.77008927719433,-2.77227214465915,"
    b"3.20203320709635,-2.89990738849473,-0.595221881324605,-4.28925378244217,0.389724120274487,"
    b"-1.14074717980657,-2.83005567450437,-0.0168224681808257,0.416955705037907,"
    b"0.126910559061474,0.517232370861764,-0.0350493686052974,-0.465211076182388,"
    b"0.320198198514526,0.0445191674731724,0.177839798284401,0.261145002567677,"
    b"-0.143275874698919,0,1",
]
_PIECES = [
    b"e", b"E-5", b"+", b"-", b".", b'"', b"x", b"", b",", b" ", b"\xc3\xa9", b"\xff", b"inf",
    b"nan", b"1_0", b"9" * 41, b"9" * 12, b"0", b"1", b'"1"', b'""', b"-.", b"5.", b".5", b"2",
]  # fmt: skip


@st.composite
def _kaggle_block(draw: st.DrawFn) -> list[bytes]:
    """A few Kaggle rows, some of them damaged at a random spot."""
    rows = draw(st.lists(st.sampled_from(_ROWS), min_size=1, max_size=8))
    out = []
    for row in rows:
        if draw(st.booleans()):
            at = draw(st.integers(0, len(row)))
            cut = draw(st.integers(0, 3))
            row = row[:at] + draw(st.sampled_from(_PIECES)) + row[at + cut :]
        out.append(row)
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_kaggle_block())
def test_block_check_never_passes_a_row_the_line_rule_refuses(rows: list[bytes]) -> None:
    """`_plain_block` (the whole-block fast path) against `check_line` (the authority) and
    `_plain_rows` (the per-row bulk check): a row it passes is accepted by both, with the same
    Time; when its separators line up it answers, else it leaves the block to them."""
    data = b"\n".join(rows) + b"\n"
    checked = _plain_block(data, len(rows))
    reference = _reference(rows, Layout.KAGGLE)
    if all(row.count(b",") == 30 for row in rows):
        assert checked is not None, "the separators line up: the block check answers"
    if checked is None:
        return
    fine, times = checked
    for ok, time, expected in zip(fine.tolist(), times.tolist(), reference, strict=True):
        if ok:
            assert expected is not None and expected[1] == time
    rows_check = _plain_rows(data[:-1], Layout.KAGGLE)
    if rows_check is not None:  # what the per-row bulk check passes, the block check passes too
        assert (fine >= rows_check[0]).all()


def test_clean_blocks_take_the_block_path(tmp_path: Path) -> None:
    path = tmp_path / "k.csv"
    write_csv(path, 2000, seed=9)
    body = path.read_bytes().split(b"\n", 1)[1]
    checked = _plain_block(body, body.count(b"\n"))
    assert checked is not None and checked[0].all()
    exponent = body.replace(b",0.1", b",1e-1", 1)  # the real data set writes a few like this
    checked = _plain_block(exponent, exponent.count(b"\n"))
    assert checked is not None and (~checked[0]).sum() == 1


def _lengths(rows: list[bytes]) -> np.ndarray:
    return np.fromiter(map(len, rows), np.int64, len(rows))


def _time_field(row: bytes) -> bytes:
    return row.split(b",", 1)[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_kaggle_block())
def test_whole_block_check_passes_only_what_the_line_rule_accepts(rows: list[bytes]) -> None:
    """`plain_block_times` (one yes/no for the whole block) against `check_line`: a yes means
    every row is accepted, with the same Time; and it is not a check that never says yes:
    where `_plain_block` passes every row and each Time has at most 9 digits, it answers."""
    data = b"\n".join(rows) + b"\n"
    times = plain_block_times(data, _lengths(rows))
    reference = _reference(rows, Layout.KAGGLE)
    if times is not None:
        assert all(r is not None for r in reference)
        assert times.tolist() == [r[1] for r in reference if r is not None]
    old = _plain_block(data, len(rows))
    if old is not None and old[0].all() and all(len(_time_field(r)) <= 9 for r in rows):
        assert times is not None


@pytest.mark.parametrize(
    ("row", "passes"),
    [
        (_ROWS[0], True),
        (_ROWS[1], True),
        (_ROWS[0].replace(b",0.5,", b",0.5.1,"), False),  # two dots in one field
        (_ROWS[0].replace(b",0.5,", b",1" + b"7" * 70 + b".5,"), True),  # long, finite
        (_ROWS[0].replace(b",0.5,", b",1" + b"7" * 400 + b",", 1), False),  # not finite
        (b"-0" + _ROWS[0][1:], True),
        (b"1234567890" + _ROWS[0][1:], False),  # 10 digits: left to the row path
        (b"12.5" + _ROWS[0][1:], True),  # a Time with a fraction
        (_ROWS[0].replace(b",0.5,", b",,"), False),
        (_ROWS[0].replace(b",0.5,", b',"0.5",'), False),
        (_ROWS[0].replace(b",0.5,", b",1e5,"), False),
        (_ROWS[0][:-3] + b'""', True),
        (_ROWS[0][:-3], True),  # empty Class
    ],
)
def test_whole_block_check_cases(row: bytes, passes: bool) -> None:
    rows = [_ROWS[1], row, _ROWS[0]]
    times = plain_block_times(b"\n".join(rows) + b"\n", _lengths(rows))
    assert (times is not None) is passes
    if times is not None:
        assert times.tolist() == [r[1] for r in _reference(rows, Layout.KAGGLE) if r is not None]


@pytest.mark.parametrize("seed", [4, 5])
def test_records_are_the_same_with_and_without_the_whole_block_check(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole file through `CsvSource`, clean blocks and mangled ones: the same records,
    Times and refused lines (with their reasons) whether or not the whole-block check runs."""
    path = tmp_path / "k.csv"
    write_csv(path, 6000, seed=seed)
    _mangle_second_half(path, seed)
    calls: list[bool] = []
    real = numpy_rows.plain_block_times

    def counted(*args: object) -> np.ndarray | None:
        answer = real(*args)  # type: ignore[arg-type]
        calls.append(answer is not None)
        return answer

    monkeypatch.setattr(csv_source, "_kaggle_records", None)  # tested below
    monkeypatch.setattr(numpy_rows, "plain_block_times", counted)
    fast = _read_all(path)
    assert any(calls) and not all(calls), "clean blocks take it, mangled ones do not"
    monkeypatch.setattr(numpy_rows, "plain_block_times", lambda *_args: None)
    assert _read_all(path) == fast
    assert fast.bad  # the mangled lines were refused


class _Replayed(NamedTuple):
    keys: list[bytes]
    values: list[bytes]
    times: bytes
    """Every record's Time, as bytes: -0.0 and 0.0 differ."""
    bad: list[tuple[int, str]]


def _read_all(path: Path) -> _Replayed:
    """Everything `CsvSource` makes of a file, in 64 KiB blocks."""
    out = _Replayed([], [], b"", [])
    times = []
    for batch in CsvSource(path, block_bytes=64 * 1024).batches():
        out.keys.extend(batch.keys)
        out.values.extend(batch.values)
        times.append(batch.times.tobytes())
        out.bad.extend((line.line, line.reason) for line in batch.bad)
    return out._replace(times=b"".join(times))


def _mangle_second_half(path: Path, seed: int) -> None:
    """Damage one line in twenty of the second half of a generated Kaggle file."""
    rng = random.Random(seed)
    head, body = path.read_bytes().split(b"\n", 1)
    lines = body.split(b"\n")
    lines[3000:] = [_mangle(x, rng) if x and rng.random() < 0.05 else x for x in lines[3000:]]
    path.write_bytes(head + b"\n" + b"\n".join(lines))


# The compiled fast path (services/producer/_kaggle_records.c) against the numpy path: whatever
# it returns, the numpy path returns too, record for record, with no line refused.

_COMPILED_PIECES = [
    *_PIECES, b"e-05", b"E+1", b"e999", b"e123", b"-0", b"\r", b"\0", b"9" * 39, b"1e", b"e-",
]  # fmt: skip


def _source(tmp_path: Path, max_line_bytes: int = 1_000_000) -> CsvSource:
    path = tmp_path / "one.csv"
    path.write_bytes(b'"Time","V1"' + b',"V"' * 27 + b',"Amount","Class"\n' + _ROWS[0] + b"\n")
    return CsvSource(path, max_line_bytes=max_line_bytes)


def _same_records(compiled: Batch, numpy_path: Batch) -> None:
    assert not numpy_path.bad, "the compiled path passed a line the numpy path refuses"
    assert compiled.keys == numpy_path.keys
    assert compiled.values == numpy_path.values
    assert compiled.times.tobytes() == numpy_path.times.tobytes()  # -0.0 too
    assert compiled.last_line == numpy_path.last_line
    assert compiled.line_numbers is None and numpy_path.line_numbers is None


@pytest.fixture(scope="module")
def kaggle_source(tmp_path_factory: pytest.TempPathFactory) -> CsvSource:
    return _source(tmp_path_factory.mktemp("kaggle"))


def test_user_steps_are_user_of_shares_over_every_share() -> None:
    """The compiled path's users (steps, no numpy) are `user_indices`' (numpy's powers)."""
    shares = np.arange(layout.USER_SHARES, dtype=np.uint64)
    stepped = np.searchsorted(np.asarray(layout.USER_STEPS), shares, side="right")
    assert (stepped == layout.user_of_shares(shares)).all()
    assert len(layout.USER_STEPS) == len(layout.USERS) - 1


def test_the_compiled_path_is_built() -> None:
    """`make setup` builds it (setup.py); without it `produce` is correct but slower."""
    assert csv_source._kaggle_records is not None, "run `make setup` (needs a C compiler)"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(_ROWS), st.integers(0, 2), st.sampled_from(_COMPILED_PIECES)),
        min_size=1,
        max_size=6,
    ),
    st.integers(1, 2**62),  # the Ids' hash wraps around 2**64 in both paths
)
def test_the_compiled_path_gives_what_the_numpy_path_gives(
    kaggle_source: CsvSource,
    damage: list[tuple[bytes, int, bytes]],
    first_line: int,
) -> None:
    """Rows damaged at a field's start, middle or end with pieces that are or are not plain
    (exponents, signs, quotes, `\\r`, NUL, long numbers): the compiled path answers exactly
    when every row is plain by its rule, and then the numpy path accepts every row too, with
    the same keys, values and Times."""
    rows = []
    for row, where, piece in damage:
        fields = row.split(b",")
        k = first_line % len(fields)
        fields[k] = (piece + fields[k], fields[k][:1] + piece, fields[k] + piece)[where]
        rows.append(b",".join(fields))
    data = b"\n".join(rows) + b"\n"
    compiled = kaggle_source._compiled_batch(data, first_line)
    if compiled is not None:
        _same_records(compiled, kaggle_source._split_batch(data, None, first_line))
    assert (compiled is not None) is all(map(_plain_by_spec, rows))


def _plain_by_spec(row: bytes) -> bool:
    """The compiled path's rule, as its C file states it."""
    fields = row.split(b",")
    return (
        len(fields) == 31
        and re.fullmatch(rb"-?[0-9]{1,9}", fields[0]) is not None
        and all(len(f) <= 40 and _PLAIN_NUMBER.fullmatch(f) for f in fields[1:30])
        and fields[30] in (b"", b"0", b"1", b'""', b'"0"', b'"1"')
    )


_PLAIN_NUMBER = re.compile(rb"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]{1,2})?")


@pytest.mark.parametrize(
    ("row", "passes"),
    [
        (_ROWS[0], True),
        (_ROWS[1], True),
        (_ROWS[0].replace(b",0.5,", b",-2.68638196892377e-05,"), True),  # as the real set has
        (_ROWS[0].replace(b",0.5,", b",1E+05,"), True),
        (_ROWS[0].replace(b",0.5,", b",1e999,"), False),  # not finite: left to the line rule
        (_ROWS[0].replace(b",0.5,", b",1e,"), False),
        (_ROWS[0].replace(b",0.5,", b",0.5.1,"), False),
        (_ROWS[0].replace(b",0.5,", b",1" + b"7" * 40 + b","), False),  # over 40 bytes
        (b"-0" + _ROWS[0][1:], True),
        (b"123456789" + _ROWS[0][1:], True),
        (b"1234567890" + _ROWS[0][1:], False),  # 10 digits: left to the numpy path
        (b"12.5" + _ROWS[0][1:], False),  # a Time with a fraction: likewise
        (_ROWS[0].replace(b",0.5,", b",,"), False),
        (_ROWS[0].replace(b",0.5,", b',"0.5",'), False),
        (_ROWS[0][:-3] + b'""', True),
        (_ROWS[0][:-3], True),  # empty Class
        (_ROWS[0][:-3] + b'"2"', False),
        (_ROWS[0] + b"\r", False),
        (b"", False),  # a blank line
    ],
)
def test_compiled_path_cases(tmp_path: Path, row: bytes, passes: bool) -> None:
    data = b"\n".join([_ROWS[1], row, _ROWS[0]]) + b"\n"
    source = _source(tmp_path)
    compiled = source._compiled_batch(data, 7)
    assert (compiled is not None) is passes
    if compiled is not None:
        _same_records(compiled, source._split_batch(data, None, 7))


def test_compiled_path_leaves_long_lines_and_open_ends_to_the_numpy_path(tmp_path: Path) -> None:
    data = _ROWS[0] + b"\n"
    assert _source(tmp_path, max_line_bytes=len(_ROWS[0]))._compiled_batch(data, 2) is not None
    assert _source(tmp_path, max_line_bytes=len(_ROWS[0]) - 1)._compiled_batch(data, 2) is None
    assert _source(tmp_path)._compiled_batch(_ROWS[0], 2) is None  # no newline at the end


@pytest.mark.parametrize("name", ["creditcard_small.csv", "generated"])
def test_whole_files_give_the_same_records_with_and_without_the_compiled_path(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through `CsvSource.batches`, clean, mangled and real rows (the shared sample: a few
    values with an exponent, quoted Class): the same records, Times and refused lines, and the
    compiled path takes the clean blocks."""
    path = SHARED_DATA / name
    if name == "generated":
        path = tmp_path / "k.csv"
        write_csv(path, 6000, seed=11)
        _mangle_second_half(path, 11)
    elif not path.exists():
        pytest.skip(f"{path} not present")

    taken: list[bool] = []
    real = CsvSource._compiled_batch

    def counted(self: CsvSource, data: bytes, first_line: int) -> Batch | None:
        answer = real(self, data, first_line)
        taken.append(answer is not None)
        return answer

    monkeypatch.setattr(CsvSource, "_compiled_batch", counted)
    compiled = _read_all(path)
    assert any(taken), "clean blocks take the compiled path"
    if name == "generated":
        assert not all(taken) and compiled.bad, "mangled blocks do not, and are refused"
    monkeypatch.setattr(csv_source, "_kaggle_records", None)
    assert _read_all(path) == compiled
