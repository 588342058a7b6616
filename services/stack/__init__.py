"""Stack orchestration."""
