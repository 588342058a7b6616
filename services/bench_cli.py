"""`fraudstream bench [NAME…]`: runs the benchmarks in bench/ (each prints its ratio)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import typer

from services.common.errors import FraudstreamError

BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def register(app: typer.Typer) -> None:
    @app.command()
    def bench(
        names: list[str] = typer.Argument(None, help="benchmarks to run (default: all)"),
        quick: bool = typer.Option(
            False, "--quick", help="a shorter run, for benchmarks that offer one (quality)"
        ),
        rounds: int | None = typer.Option(
            None,
            "--rounds",
            min=1,
            help="rounds, for benchmarks that take them (ksql, latency, producer, scorer, …); "
            "default: each benchmark's own",
        ),
    ) -> None:
        """Run the benchmarks in bench/; each prints a ratio against a baseline of the same run."""
        chosen = names or available()
        unknown = [n for n in chosen if n not in available()]
        if unknown:
            raise FraudstreamError(
                f"unknown benchmark {', '.join(unknown)}; available: {', '.join(available())}",
                code="bad_option",
            )
        for name in chosen:
            typer.echo(f"== bench {name}")
            script = BENCH_DIR / f"bench_{name}.py"
            sys.argv = [script.name]
            text = script.read_text()
            if quick and '"--quick"' in text:
                sys.argv.append("--quick")
            if rounds is not None and '"--rounds"' in text:
                sys.argv += ["--rounds", str(rounds)]
            runpy.run_path(str(BENCH_DIR / f"bench_{name}.py"), run_name="__main__")
