"""Client properties for real clusters: the allow-list, their environment names, fraudstream.toml.

A secured cluster (SASL/SCRAM, SASL/PLAIN, mTLS, Confluent Cloud API keys, a Schema Registry
behind basic auth) needs more than an address. The services take the properties the Confluent
clients take, under the Confluent clients' own names, from two places:

- an environment variable per property: the section's prefix, then the property upper-cased with
  dots turned into underscores (`security.protocol` of Kafka is `KAFKA_SECURITY_PROTOCOL`,
  `basic.auth.user.info` of the Schema Registry is `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`);
- a TOML file (`$FRAUDSTREAM_CONFIG`, else `./fraudstream.toml` when it exists) with one table per
  section; a string may refer to environment variables as `${NAME}` (`$$` is a literal `$`), so
  secrets need not be written into the file.

An environment variable wins over the file. Only the properties listed here are read: an unknown
key in the file is an error that names it, and no other `KAFKA_*` variable reaches a client (the
Kafka broker's own containers use `KAFKA_*` variables for something else). Nothing here returns
or prints a secret's value in a message.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import FraudstreamError

CONFIG_ENV = "FRAUDSTREAM_CONFIG"
DEFAULT_CONFIG = Path("fraudstream.toml")

KAFKA_CLIENT_PROPERTIES: dict[str, bool] = {
    "bootstrap.servers": False,
    "security.protocol": False,
    "sasl.mechanism": False,
    "sasl.username": False,
    "sasl.password": True,
    "ssl.ca.location": False,
    "ssl.certificate.location": False,
    "ssl.key.location": False,
    "ssl.key.password": True,
    "ssl.keystore.location": False,
    "ssl.keystore.password": True,
    "ssl.endpoint.identification.algorithm": False,
    "enable.ssl.certificate.verification": False,
}
"""Kafka client property -> whether it is a secret. Every producer, consumer and admin client
gets those that are set (services/common/kafka.py: client_config)."""

HTTP_CLIENT_PROPERTIES: dict[str, bool] = {
    "url": False,
    "basic.auth.user.info": True,
    "ssl.ca.location": False,
}
"""Schema Registry and KSQL client properties -> whether it is a secret (`user:password`)."""

SECTIONS: dict[str, tuple[str, dict[str, bool]]] = {
    "kafka": ("KAFKA", KAFKA_CLIENT_PROPERTIES),
    "schema_registry": ("SCHEMA_REGISTRY", HTTP_CLIENT_PROPERTIES),
    "ksql": ("KSQL", HTTP_CLIENT_PROPERTIES),
}
"""The file's tables: name -> (environment prefix, allowed properties)."""

MAX_CONFIG_BYTES = 256 * 1024
_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$")


def env_name(section: str, prop: str) -> str:
    """The environment variable of a property: `KAFKA_SASL_USERNAME` for kafka's sasl.username."""
    prefix, _ = SECTIONS[section]
    return f"{prefix}_{prop.upper().replace('.', '_')}"


def client_setting_names() -> dict[str, tuple[str, str, bool]]:
    """Every environment name of the allow-list -> (section, property, secret)."""
    return {
        env_name(section, prop): (section, prop, secret)
        for section, (_, props) in SECTIONS.items()
        for prop, secret in props.items()
    }


def is_secret(name: str) -> bool:
    entry = client_setting_names().get(name)
    return bool(entry and entry[2])


class ConfigFileError(FraudstreamError):
    """A mistake in fraudstream.toml: it names the key, never the value (it may be a secret)."""

    default_code = "bad_setting"


@dataclass(frozen=True)
class FileValue:
    """One setting as written in the file, before `${NAME}` references are resolved."""

    raw: str
    key: str
    """Where it is written, for messages: `[kafka] sasl.password in /path/fraudstream.toml`."""

    def resolve(self) -> str:
        """The value with `${NAME}` replaced from the environment; an unset NAME is an error
        that names the key and the variable (never the value)."""

        def replace(match: re.Match[str]) -> str:
            whole, name = match.group(0), match.group(1)
            if whole == "$$":
                return "$"
            if name is None:
                raise ConfigFileError(f"{self.key}: a lone '$' (write $$ for a dollar sign)")
            if name not in os.environ:
                raise ConfigFileError(f"{self.key} refers to ${{{name}}}, which is not set")
            return os.environ[name]

        return _REFERENCE.sub(replace, self.raw)

    @property
    def references(self) -> list[str]:
        return [m.group(1) for m in _REFERENCE.finditer(self.raw) if m.group(1)]


@dataclass(frozen=True)
class ConfigFile:
    path: Path
    values: dict[str, FileValue]
    """Environment name of the setting -> its value in the file."""


_CACHE: dict[tuple[str, int, int], ConfigFile] = {}


def config_path() -> Path | None:
    """The file to read: $FRAUDSTREAM_CONFIG (which must exist), else ./fraudstream.toml if any."""
    named = os.environ.get(CONFIG_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigFileError(f"{CONFIG_ENV}={named}: no such file")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def load_config_file() -> ConfigFile | None:
    """The configuration file, parsed once per version of it (keyed by path, mtime, size)."""
    path = config_path()
    if path is None:
        return None
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    cached = _CACHE.get(key)
    if cached is None:
        cached = parse_config(path)
        _CACHE.clear()
        _CACHE[key] = cached
    return cached


def parse_config(path: Path) -> ConfigFile:
    """Read and check a configuration file: known tables and keys only, scalar values."""
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigFileError(f"{path}: over {MAX_CONFIG_BYTES // 1024} KiB, not a config file")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"cannot read {path}: {exc}") from None
    values: dict[str, FileValue] = {}
    for section, table in document.items():
        if section not in SECTIONS:
            raise ConfigFileError(
                f"{path}: unknown table [{section}] (known: {', '.join(SECTIONS)})"
            )
        if not isinstance(table, dict):
            raise ConfigFileError(f"{path}: {section} must be a table ([{section}])")
        allowed = SECTIONS[section][1]
        for prop, value in _flatten(table):
            where = f"[{section}] {prop} in {path}"
            if prop not in allowed:
                raise ConfigFileError(
                    f"{path}: [{section}] {prop} is not a supported property "
                    f"(supported: {', '.join(allowed)})"
                )
            values[env_name(section, prop)] = FileValue(_scalar(value, where), where)
    return ConfigFile(path, values)


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """`sasl.username = "x"` is a nested table in TOML and `"sasl.username" = "x"` a quoted key:
    both become the property `sasl.username`."""
    out: list[tuple[str, Any]] = []
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, name + ".")
        else:
            out.append((name, value))
    return out


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int):
        return str(value)
    raise ConfigFileError(f"{where}: must be a string, a number or true/false")


@dataclass(frozen=True)
class Lookup:
    """A setting's value and where it came from (`env NAME`, the file's key, or `default`)."""

    value: str
    origin: str


def lookup(name: str, default: str = "") -> Lookup:
    """A setting by its environment name: the environment first, then the file, then `default`."""
    value = os.environ.get(name)
    if value:
        return Lookup(value, f"env {name}")
    entry = _file_entry(name)
    if entry is not None:
        return Lookup(entry.resolve(), entry.key)
    return Lookup(default, "default")


def _file_entry(name: str) -> FileValue | None:
    config = load_config_file()
    return config.values.get(name) if config else None


def where(name: str) -> str:
    """How to name a setting in a message: its variable, or also its key in the file."""
    entry = None if os.environ.get(name) else _file_entry(name)
    return name if entry is None else f"{name} ({entry.key})"
