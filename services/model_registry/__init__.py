"""model_registry service."""
