"""The engine's catalogue of streams and tables (what DESCRIBE and SHOW read)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.ksql_server.formats.info import FormatInfo
from services.ksql_server.types import ColumnDef


@dataclass
class DataSource:
    name: str
    kind: str  # STREAM | TABLE
    topic: str
    key_columns: list[ColumnDef]
    value_columns: list[ColumnDef]
    key_format: FormatInfo
    value_format: FormatInfo
    sql: str
    timestamp_column: str | None = None
    timestamp_format: str | None = None
    partitions: int = 1
    replicas: int = 1
    is_source: bool = False
    created_by_query: str | None = None
    header_columns: list[ColumnDef] = field(default_factory=list)
    window: Any = None  # formats.windowed.WindowInfo of a windowed source (None: not windowed)

    @property
    def columns(self) -> list[ColumnDef]:
        """Keys first, then values: the order of `SELECT *` and DESCRIBE."""
        return self.key_columns + self.value_columns

    @property
    def keyless(self) -> bool:
        return not self.key_columns


@dataclass
class MetaStore:
    sources: dict[str, DataSource] = field(default_factory=dict)

    def get(self, name: str) -> DataSource | None:
        return self.sources.get(name)

    def put(self, source: DataSource) -> None:
        self.sources[source.name] = source

    def remove(self, name: str) -> DataSource | None:
        return self.sources.pop(name, None)

    def alternatives(self, name: str) -> str:
        """ksqlDB's hint after an unknown source name (MetaStore.checkAlternatives): a source
        whose name differs only in case, and how to write it (quoted or not)."""
        for other in self.sources:
            if other != name and other.upper() == name.upper():
                if other == other.upper():
                    return (
                        f"\nDid you mean {other}? Hint: try removing double quotes from the "
                        "source name."
                    )
                return (
                    f'\nDid you mean "{other}"? Hint: wrap the source name in double quotes to '
                    "make it case-sensitive."
                )
        return ""

    def by_topic(self, topic: str) -> list[DataSource]:
        return [s for s in self.sources.values() if s.topic == topic]

    def snapshot(self) -> dict[str, Any]:
        return {n: s.kind for n, s in self.sources.items()}
