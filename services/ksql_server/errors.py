"""Errors raised inside the engine; `engine.py` turns them into KsqlStatementError."""

from __future__ import annotations


class KsqlError(Exception):
    """A statement is invalid (wrong column, type mismatch, missing source…): error 40001."""


class UnsupportedError(KsqlError):
    """The statement is valid ksqlDB but uses a feature this server does not implement.

    Kept distinct so the conformance runner can report such cases as skipped (with this reason)
    rather than failed, and never as passed."""
