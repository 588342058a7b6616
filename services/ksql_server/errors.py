"""Errors raised inside the engine; `engine.py` turns them into KsqlStatementError."""

from __future__ import annotations


class KsqlError(Exception):
    """A statement is invalid (wrong column, type mismatch, missing source…): error 40001."""


class UnsupportedError(KsqlError):
    """The statement is valid ksqlDB but uses a feature this server does not implement.

    Kept distinct so the conformance runner can report such cases as skipped (with this reason)
    rather than failed, and never as passed."""


MAX_ECHO_CHARS = 64 * 1024
"""An error quotes at most this much of the statement (and a message that quotes it is cut
to this too): a 15 MB statement's error then costs kilobytes to build and render, not more
15 MB copies."""


def clip(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """`text`, cut to `limit` characters with a note saying how much was left out."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"… [{len(text) - limit} more characters not shown]"
