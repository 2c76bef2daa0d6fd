"""Voice pipeline."""
