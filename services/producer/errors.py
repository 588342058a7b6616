"""The producer's branch of the error family, and the codes of the CSV lines it refuses.

`ProducerError` is the root of what the producer raises on purpose (a file it cannot read as a
transactions CSV, records the broker did not take). A refused *line* is not an error that stops
the replay: it becomes a `BadLine` carrying one of the `LINE_*` codes below, which goes to the
dead-letter topic as its `fraudstream.reason` header while the text says what was wrong.
"""

from __future__ import annotations

from typing import NamedTuple

from services.common.errors import FraudstreamError

LINE_TOO_LONG = "line_too_long"
"""The line is longer than `--max-line-bytes`; only its first bytes are kept."""
CSV_ENCODING = "csv_encoding"
"""The line holds a NUL byte or is not valid UTF-8."""
CSV_COLUMNS = "csv_columns"
"""The line does not have the layout's number of fields."""
CSV_VALUE = "csv_value"
"""A field is empty, not a number, not finite, out of range, or not a valid `Class`."""
LINE_CODES = (LINE_TOO_LONG, CSV_ENCODING, CSV_COLUMNS, CSV_VALUE)


class Refusal(NamedTuple):
    """Why one line was refused: the stable `code` and the text for people."""

    code: str
    text: str


class ProducerError(FraudstreamError):
    """Anything the producer (CSV reader, replay, data generator) raises on purpose."""

    default_code = "producer"


class CsvFileError(ProducerError):
    """A file that cannot be read as a transactions CSV at all (missing, unreadable, UTF-16,
    empty, an unknown layout): nothing of it is sent."""

    default_code = "csv_file"
