"""schema_registry service."""
