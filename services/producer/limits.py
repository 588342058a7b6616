"""Bounds on what the CSV reader holds, in a module light enough for the CLI to import
(`fraudstream --help` must not load pandas)."""

from __future__ import annotations

DEFAULT_MAX_LINE_BYTES = 1_000_000
"""A line (without its line end) longer than this is refused unread: 1 MB, the largest record
librdkafka sends by default (`message.max.bytes`)."""
LONG_LINE_KEEP_BYTES = 4096
"""The first bytes of a refused long line that are kept (for the DLQ and the report)."""
