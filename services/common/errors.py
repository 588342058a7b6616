"""Errors a user can act on: the CLI prints them as one line and exits non-zero."""

from __future__ import annotations


class FraudstreamError(Exception):
    """A failure with a message meant for the user (no stack trace needed)."""


class ServiceUnavailable(FraudstreamError):
    """A service (broker, registry, KSQL server) did not answer."""
