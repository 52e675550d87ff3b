"""CLI commands: classify (filled in by its owner)."""

from streamer.cli import app  # noqa: F401
