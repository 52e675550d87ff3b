"""CLI commands: worker (filled in by its owner)."""

from streamer.cli import app  # noqa: F401
