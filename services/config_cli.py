"""`fraudstream config show`: the effective connection settings, secrets masked.

With settings coming from the environment and from fraudstream.toml (with `${ENV}` references),
"which value does the scorer really use, and from where?" needs an answer that is safe to paste
into a ticket: every setting that is set, where it came from, and no secret's value.
"""

from __future__ import annotations

from pathlib import Path

import typer

from services.common.config_file import (
    client_setting_names,
    config_path,
    is_secret,
    load_config_file,
    lookup,
)
from services.common.settings import ENV_DEFAULTS, HTTP_SECURITY_ENV, get_settings

MASK = "****"

config_app = typer.Typer(help="Show the connection settings the services use.")

_ALWAYS = tuple(ENV_DEFAULTS)
"""Shown even at their defaults: the addresses and folders of DESIGN.md."""


def mask(name: str, value: str) -> str:
    """A secret as `****` (`user:****` for basic.auth.user.info: the user is not the secret)."""
    if not value or not is_secret(name):
        return value
    if name.endswith("_BASIC_AUTH_USER_INFO") and ":" in value:
        return f"{value.partition(':')[0]}:{MASK}"
    return MASK


def setting_names() -> list[str]:
    """Every setting `config show` knows: DESIGN.md's, the client allow-list, the HTTP ones."""
    names = list(_ALWAYS)
    for name in [*client_setting_names(), *HTTP_SECURITY_ENV]:
        if name not in names:
            names.append(name)
    return names


def rows(show_all: bool = False) -> list[tuple[str, str, str]]:
    """(name, masked value, origin) of each setting that is set (or always shown)."""
    out: list[tuple[str, str, str]] = []
    for name in setting_names():
        found = lookup(name, ENV_DEFAULTS.get(name) or HTTP_SECURITY_ENV.get(name, ""))
        if found.origin == "default" and name not in _ALWAYS and not show_all:
            continue
        out.append((name, mask(name, found.value), _origin(name, found.origin)))
    return out


def _origin(name: str, origin: str) -> str:
    if origin == f"env {name}":
        return "environment"
    if origin == "default":
        return origin
    config = load_config_file()
    entry = config.values.get(name) if config else None
    refs = ", ".join(f"${{{ref}}}" for ref in entry.references) if entry else ""
    file_key = origin.split(" in ")[0]
    if refs:
        return f"file {file_key} from {refs}"
    return f"file {file_key}" + (
        " (written in the file: prefer ${NAME})" if is_secret(name) else ""
    )


def register(app: typer.Typer) -> None:
    @config_app.command("show")
    def show_cmd(
        show_all: bool = typer.Option(False, "--all", help="also the settings left unset"),
    ) -> None:
        """Print every setting in effect, where it comes from, with secrets masked."""
        table = rows(show_all)
        get_settings()  # refuses inconsistent settings with a one-line error naming the key
        width = max(len(name) for name, _, _ in table)
        for name, value, origin in table:
            typer.echo(f"{name:<{width}}  {value or '-':<40}  {origin}")
        config = load_config_file()
        if (
            config
            and _readable_by_others(config.path)
            and any("written in" in o for *_, o in table)
        ):
            typer.echo(
                f"warning: {config.path} holds a secret and others may read it (chmod 600)",
                err=True,
            )
        source = f"file {config.path}" if config else f"no file ({_missing_file()})"
        from_env = sum(origin == "environment" for _, _, origin in table)
        typer.echo(f"{len(table)} settings ({from_env} from the environment; {source})")

    app.add_typer(config_app, name="config")


def _readable_by_others(path: Path) -> bool:
    return bool(path.stat().st_mode & 0o044)


def _missing_file() -> str:
    return "FRAUDSTREAM_CONFIG unset, no ./fraudstream.toml" if config_path() is None else ""
