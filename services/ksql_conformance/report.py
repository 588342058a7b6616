"""Runs QTT files and prints the per-file table, failures and the summary line."""

from __future__ import annotations

import collections
import logging
from pathlib import Path
from xml.sax.saxutils import quoteattr

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.common.errors import ServiceUnavailable
from services.common.kafka import broker_reachable
from services.common.settings import get_settings
from services.ksql_conformance.qtt import Case, Result, Runner, collect_files, load_cases
from services.ksql_server.errors import KsqlServiceError


def run_files(
    paths: list[Path], workers: int = 6, match: str | None = None, progress: bool = False
) -> list[Result]:
    settings = get_settings()
    if not broker_reachable(settings.bootstrap_servers):
        raise ServiceUnavailable(f"Kafka broker at {settings.bootstrap_servers} is not reachable")
    files = collect_files(paths)
    if not files:
        raise KsqlServiceError(
            f"no QTT files found in {', '.join(map(str, paths))}", code="no_cases"
        )
    cases: list[Case] = []
    for f in files:
        cases += [c for c in load_cases(f) if match is None or match in c.name]
    logging.getLogger("fraudstream.ksql").setLevel(logging.CRITICAL)
    runner = Runner(settings.bootstrap_servers, settings.schema_registry_url, workers=workers)
    if not progress:
        return runner.run(cases)
    with Progress(transient=True) as bar:
        task = bar.add_task("QTT cases", total=len(cases))
        return runner.run(cases, lambda _r: bar.advance(task))


def run_and_report(
    paths: list[Path], junit: Path | None, workers: int, match: str | None, verbose: bool
) -> None:
    results = run_files(paths, workers, match, progress=True)
    console = Console()
    per_file: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        per_file[r.case.file][r.status] += 1
    table = Table(title="ksqlDB query-validation tests")
    for col in ("file", "passed", "failed", "skipped"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for f, c in sorted(per_file.items()):
        table.add_row(f, str(c["passed"]), str(c["failed"]), str(c["skipped"]))
    console.print(table)
    reasons = collections.Counter(r.feature for r in results if r.status == "skipped")
    if reasons:
        console.print(
            "skipped because: " + ", ".join(f"{k} ({v})" for k, v in reasons.most_common(12))
        )
    failures = [r for r in results if r.status == "failed"]
    for r in failures if verbose else failures[:10]:
        console.print(
            f"[red]FAIL[/red] {r.case.file} :: {r.case.name}: {r.reason}",
            markup=True,
            highlight=False,
        )
    if junit is not None:
        write_junit(results, junit)
    total = collections.Counter(r.status for r in results)
    print(f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped")


def write_junit(results: list[Result], path: Path) -> None:
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuite name="ksql-qtt" tests="{len(results)}" '
        f'failures="{sum(r.status == "failed" for r in results)}" '
        f'skipped="{sum(r.status == "skipped" for r in results)}">',
    ]
    for r in results:
        lines.append(
            f"  <testcase classname={quoteattr(r.case.file)} name={quoteattr(r.case.name)} "
            f'time="{r.seconds:.3f}">'
        )
        if r.status == "failed":
            lines.append(f"    <failure message={quoteattr(r.reason[:500])}/>")
        elif r.status == "skipped":
            lines.append(f"    <skipped message={quoteattr(r.reason[:500])}/>")
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    path.write_text("\n".join(lines) + "\n")
