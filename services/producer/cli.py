"""`fraudstream datagen` and `fraudstream produce` (mounted by services/cli.py)."""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer

from services.producer.errors import ProducerError
from services.producer.limits import DEFAULT_MAX_LINE_BYTES, LONG_LINE_KEEP_BYTES

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

SHOWN_BAD_LINES = 20
"""Refused lines printed one by one; beyond that only their count (all go to the DLQ)."""


def _one_blas_thread() -> None:
    """Start numpy with one OpenBLAS thread: these commands multiply 14-wide matrices at most,
    and starting OpenBLAS's pool of threads costs about 0.1 s of CPU, a third of `datagen
    --rows 1` (`bench/bench_producer.py`, start-up). Only before numpy's first import: later
    it changes nothing, and a process that has numpy already keeps its environment."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def datagen(
    rows: int = typer.Option(..., "--rows", min=0, help="number of transactions to write"),
    out: Path = typer.Option(..., "--out", help="CSV file to write (parent folders are created)"),
    seed: int = typer.Option(0, "--seed", help="random seed: the same seed gives the same file"),
    fraud_ratio: float = typer.Option(
        0.00172, "--fraud-ratio", min=0.0, max=1.0, help="share of frauds (real data: 0.00172)"
    ),
    extended: bool = typer.Option(
        False,
        "--extended",
        help="the demo's layout: Id,Timestamp,User in front, no header (default: Kaggle layout)",
    ),
    family: str = typer.Option(
        "latent",
        "--family",
        help="data family: latent (the default generator) or copula (a Gaussian copula from the "
        "data set's published per-column statistics; see services/common/synthetic_families.py)",
    ),
    users: bool = typer.Option(
        True,
        "--users/--no-users",
        help="also write the users the rows name to <out>_users.csv (USERID,CITY,LEVEL,"
        "SIGNUP_DATE), for `produce --users`",
    ),
) -> None:
    """Write synthetic transactions shaped like the Kaggle credit-card data set.

    Time rises over two days with a day/night rhythm, V1..V28 have the published variances and
    heavy tails, Amount the published mean and median, and about 0.172 % of rows are frauds that
    differ mostly in V14, V12, V10, V17, V4, V11 and V3. Rows are written in chunks, so memory
    stays flat for any --rows. --family copula makes rows by a different process (a Gaussian
    copula of the published per-column statistics), to judge models on data not made for them.

    The users the rows name (their User column, or the one produce adds to the Kaggle layout)
    go to a second file beside --out, <name>_users.csv: USERID, CITY (about a quarter in a
    "Premium …" city), LEVEL and SIGNUP_DATE, the same for a seed whatever --rows is.
    """
    _one_blas_thread()
    from services.common.synthetic_families import FAMILIES
    from services.producer.datagen import write_csv

    if family not in FAMILIES:
        raise ProducerError(
            f"unknown --family {family!r}; known: {', '.join(FAMILIES)}", code="bad_option"
        )

    with _progress(rows_total=rows) as progress:
        task = progress.add_task("datagen", total=rows)
        try:
            result = write_csv(
                out,
                rows,
                seed=seed,
                fraud_ratio=fraud_ratio,
                extended=extended,
                progress=lambda n: progress.advance(task, n),
                family=family,
            )
        except OSError as exc:
            raise ProducerError(
                f"cannot write {out}: {exc.strerror or exc}", code="cannot_write"
            ) from exc
    if users:
        _write_users(result.path, result.user_indices, seed)
    typer.echo(f"wrote {result.rows} rows ({result.frauds} frauds) to {result.path}")


def _write_users(transactions: Path, indices: frozenset[int], seed: int) -> None:
    from services.producer.users import users_for, users_path, write_users_csv

    path = users_path(transactions)
    try:
        count = write_users_csv(path, users_for(indices, seed))
    except OSError as exc:
        raise ProducerError(
            f"cannot write {path}: {exc.strerror or exc}", code="cannot_write"
        ) from exc
    typer.echo(f"wrote {count} users to {path}")


def produce(
    csv: Path = typer.Option(None, "--csv", help="CSV in the Kaggle or the extended layout"),
    users: Path = typer.Option(
        None,
        "--users",
        help="a users CSV (datagen's <out>_users.csv) to replay into the users topic first, "
        "JSON values keyed by USERID",
    ),
    topic: str = typer.Option(
        None,
        "--topic",
        help="target topic (3 partitions if new; default creditcardfraud_source, with "
        "_json_sr or _protobuf added for those formats)",
    ),
    limit: int = typer.Option(None, "--limit", min=0, help="stop after N records"),
    rate: float = typer.Option(None, "--rate", help="at most R records per second"),
    speedup: float = typer.Option(
        None, "--speedup", help="replay by the Time column, X times faster than real time"
    ),
    max_line_bytes: int = typer.Option(
        DEFAULT_MAX_LINE_BYTES,
        "--max-line-bytes",
        min=1,
        help=f"a longer line goes to the DLQ (its first {LONG_LINE_KEEP_BYTES} bytes and its "
        "length), never read whole",
    ),
    value_format: str = typer.Option(
        "delimited",
        "--format",
        help="value format: delimited, json_sr or protobuf (the last two register their schema "
        "under <topic>-value; ksql/examples/50_* and 51_* turn them into the Avro streams)",
    ),
) -> None:
    """Replay a CSV into creditcardfraud_source as DELIMITED values keyed by Id.

    The Kaggle layout gets Id (row number), Timestamp (2013-09-01T00:00:00Z + Time) and User
    added. Lines that cannot be parsed are printed with their line number and sent to
    creditcardfraud_dlq with the reason in their headers; every good line goes through. A line
    longer than --max-line-bytes (default 1,000,000) goes there too, cut to its first 4 KiB with
    its length in the headers. Ctrl-C flushes what was sent and prints the count.

    --users PATH replays a users CSV into the users topic (one partition if new) before the
    transactions, keyed by USERID with the row as a JSON value: the USERS table of
    ksql/examples/30_per_user_join.sql. Either option alone is enough.
    """
    _one_blas_thread()
    from services.producer.formats import default_topic, value_encoder
    from services.producer.replay import produce_csv
    from services.producer.rows import BadLine

    if csv is None and users is None:
        raise ProducerError("give --csv, --users or both", code="bad_option")
    if users is not None:
        from services.producer.users import produce_users

        done = produce_users(users)
        if csv is None:
            typer.echo(done.summary())
            return
        typer.echo(f"produced {done.records} users to {done.topic}")
    topic = topic or default_topic(value_format)
    encode_values = value_encoder(value_format, topic)

    shown = 0

    def report(line: BadLine) -> None:
        nonlocal shown
        shown += 1
        if shown <= SHOWN_BAD_LINES:
            _say(f"line {line.line}: {line.reason} (sent to the DLQ)")

    size = csv.stat().st_size if csv.is_file() else 0
    with _progress(bytes_total=size) as progress:
        task = progress.add_task("produce", total=size or None)
        result = produce_csv(
            csv,
            topic,
            limit=limit,
            rate=rate,
            speedup=speedup,
            on_progress=lambda _n, nbytes: progress.advance(task, nbytes),
            on_bad=report,
            max_line_bytes=max_line_bytes,
            encode_values=encode_values,
        )
    if not result.records and not result.bad and not result.interrupted and limit != 0:
        _say(f"{csv} holds no data lines (only a header or blank lines)")
    if result.bad > SHOWN_BAD_LINES:
        _say(f"… {result.bad - SHOWN_BAD_LINES} more bad lines")
    if result.bad:
        _say(f"{result.bad} bad lines sent to the DLQ")
    if result.failed or result.dlq_failed:
        _say(
            f"{result.failed} records and {result.dlq_failed} dead letters were refused by the "
            f"broker (last error: {result.last_error})"
        )
    if result.interrupted:
        _say("interrupted: queued records were flushed")
    typer.echo(result.summary())
    if result.interrupted:
        sys.exit(130)
    if result.failed or result.dlq_failed:
        sys.exit(1)


def _say(text: str) -> None:
    """A message on stderr, as it is (stdout keeps the summary line clean for scripts)."""
    typer.echo(text, err=True)


class _Quiet:
    """The progress bar's stand-in when stderr is no terminal (a script, a pipe, a container
    log): the bar would draw nothing there, and skipping rich saves its import at start-up."""

    def __enter__(self) -> _Quiet:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def add_task(self, *_args: object, **_kwargs: object) -> TaskID:
        return cast("TaskID", 0)

    def advance(self, *_args: object) -> None:
        return None


def _progress(rows_total: int | None = None, bytes_total: int | None = None) -> Progress | _Quiet:
    """A progress bar on stderr (stdout keeps the summary line clean for scripts)."""
    if not sys.stderr.isatty():
        return _Quiet()
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    amount = MofNCompleteColumn() if rows_total is not None else DownloadColumn()
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        amount,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )


def _paragraphs(doc: str | None) -> str:
    """A docstring as --help text: paragraphs kept, the source's line wrapping dropped."""
    blocks = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(block.split()) for block in blocks)


def register(app: typer.Typer) -> None:
    """Add `datagen` and `produce` to the `fraudstream` app."""
    app.command("datagen", help=_paragraphs(datagen.__doc__))(datagen)
    app.command("produce", help=_paragraphs(produce.__doc__))(produce)
