"""`fraudstream ui`: the analyst's console in the foreground (the URL is the last line printed)."""

from __future__ import annotations

import typer

from services.console.config import DEFAULT_UI_HOST, DEFAULT_UI_PORT


def register(app: typer.Typer) -> None:
    """Add `ui` to the `fraudstream` app."""

    @app.command()
    def ui(
        host: str = typer.Option(DEFAULT_UI_HOST, help="address to bind"),
        port: int = typer.Option(DEFAULT_UI_PORT, help="port to bind"),
    ) -> None:
        """The analyst's console in the browser: alerts, feedback, health, models, KSQL.

        Live alerts with their explanations, analysts' feedback, the alert budget, pipeline
        health and feature drift, model versions and a KSQL editor.

        Reads Kafka, the Schema Registry, the KSQL server and models/ through the usual settings
        (KAFKA_BOOTSTRAP_SERVERS, SCHEMA_REGISTRY_URL, KSQL_URL, MODELS_DIR). Ctrl-C stops it."""
        from services.console.server import serve

        if not 0 < port < 65536:
            raise typer.BadParameter("--port must be 1-65535")
        serve(host, port, ready=lambda url: typer.echo(url))
