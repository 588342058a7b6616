"""`fraudstream ksql serve|apply|query` (and `conformance`, from `services.ksql_conformance`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from services.common.http import cli as http_cli
from services.ksql_server.errors import KsqlServiceError

ksql_app = typer.Typer(
    help="The KSQL server (ksqlDB's REST API on the real broker) and its statements.",
    no_args_is_help=True,
)


@ksql_app.command("serve")
def serve_command(
    host: str = typer.Option(None, help="address to bind (default: the host of KSQL_URL)"),
    port: int = typer.Option(None, help="port to bind (default: the port of KSQL_URL)"),
    service_id: str = typer.Option(
        None, help="ksql.service.id: names the command topic (default: default_)"
    ),
    prop: list[str] = typer.Option(
        [],
        "--property",
        "-p",
        help="server-wide property NAME=VALUE, e.g. processing.guarantee=exactly_once_v2",
    ),
    users_file: Path = http_cli.USERS_FILE,
    tls_cert: Path = http_cli.TLS_CERT,
    tls_key: Path = http_cli.TLS_KEY,
    allowed_host: list[str] = http_cli.ALLOWED_HOST,
) -> None:
    """Run the KSQL server in the foreground (HTTP/1.1 and HTTP/2 on one port).

    Statements are kept in the command topic and replayed at start, so persistent queries resume
    where they stopped. `fraudstream stack up` starts it in the background. Cleartext unless
    --tls-cert/--tls-key; no authentication unless --users-file (docs/security.md).
    """
    from services.ksql_server.server import serve

    http = http_cli.http_settings(users_file, tls_cert, tls_key, allowed_host)
    serve(host, port, service_id, _parse_properties(prop), http)


@ksql_app.command("apply")
def apply_command(
    paths: list[Path] = typer.Argument(
        None, help="statement files or folders (a folder's .sql files in file-name order)"
    ),
) -> None:
    """Submit KSQL statement files over REST (default: ksql/); re-applying is harmless.

    Example: fraudstream ksql apply            # the pipeline's streams and queries
             fraudstream ksql apply ksql/examples/10_masking.sql
    """
    from rich.progress import Progress

    from services.common.settings import get_settings
    from services.ksql_server.rest.client import KsqlClient, statement_files

    paths = paths or [_default_statements()]
    files = statement_files(paths)
    if not files:
        raise KsqlServiceError(
            f"no .sql files in {', '.join(str(p) for p in paths)}", code="no_statements"
        )
    client = KsqlClient(get_settings().ksql_url)
    with Progress(transient=True) as progress:
        task = progress.add_task("applying statements", total=None)
        count = client.apply_files(files, lambda file, _: progress.advance(task))
    typer.echo(f"applied {count} statements")


def _default_statements() -> Path:
    """`ksql/` of the working directory, else the project's own (when run from elsewhere)."""
    here = Path("ksql")
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "ksql"


def _parse_properties(pairs: list[str]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise KsqlServiceError(f"bad property {pair!r}: expected NAME=VALUE", code="bad_option")
        properties[name.strip()] = value.strip()
    return properties


def _cell(value: Any) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


@ksql_app.command("query")
def query_command(
    sql: str = typer.Argument(..., help="one SELECT statement (push with EMIT CHANGES, or pull)"),
    prop: list[str] = typer.Option(
        [], "--property", "-p", help="query property NAME=VALUE, e.g. auto.offset.reset=earliest"
    ),
    timeout: float = typer.Option(
        None, help="stop a push query after this many seconds without a new row"
    ),
    as_json: bool = typer.Option(False, "--json", help="print each row as a JSON object"),
) -> None:
    """Run a push or pull query and print its rows as they arrive.

    Example: fraudstream ksql query "SELECT ID, AMOUNT FROM FRAUD_ALERTS EMIT CHANGES LIMIT 3;"
    """
    import json

    from services.common.settings import get_settings
    from services.ksql_server.rest.client import KsqlClient

    client = KsqlClient(get_settings().ksql_url)
    columns: list[str] = []
    rows = 0
    try:
        for item in client.stream_query(sql, _parse_properties(prop), timeout=timeout):
            if isinstance(item, dict):
                columns = [str(c) for c in item.get("columnNames", [])]
                if not as_json:
                    typer.echo(" | ".join(columns))
                continue
            rows += 1
            if as_json:
                typer.echo(json.dumps(dict(zip(columns, item, strict=False))))
            else:
                typer.echo(" | ".join(_cell(v) for v in item))
    except KeyboardInterrupt:
        pass
    typer.echo(f"{rows} rows")


def register(app: typer.Typer) -> None:
    """Mount `fraudstream ksql ...`."""
    import importlib

    try:
        conformance_cli = importlib.import_module("services.ksql_conformance.cli")
    except ModuleNotFoundError as exc:
        if exc.name != "services.ksql_conformance.cli":
            raise
    else:
        conformance_cli.register(ksql_app)
    app.add_typer(ksql_app, name="ksql")
