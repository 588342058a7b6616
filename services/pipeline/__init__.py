"""Whole-pipeline run."""
