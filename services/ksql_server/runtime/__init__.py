"""runtime of the KSQL engine."""
