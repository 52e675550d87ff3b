"""Deliverability analytics: categories, mailbox providers, windowed stats, suppressions, gaps.

Every module here is framework-free (no Kafka, no Faust) and pure where it can be: the worker
feeds records in and publishes what comes out. Every structure keyed by input values is bounded.
"""

from __future__ import annotations

from pathlib import Path

from streamer import resources

#: The shipped analytics tables live next to the shipped rules (they are not rule files).
TABLES_DIR = resources.rules_dir()


def shipped_categories_file() -> Path:
    return TABLES_DIR / "categories.toml"


def shipped_providers_file() -> Path:
    return TABLES_DIR / "mailbox-providers.toml"
