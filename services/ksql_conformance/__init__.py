"""conformance of the KSQL engine."""
