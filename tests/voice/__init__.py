"""Tests for the voice pipeline."""
