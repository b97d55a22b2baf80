"""Fail-safe layer: the command gate (the only path to a field write) and the field-safety monitor."""
