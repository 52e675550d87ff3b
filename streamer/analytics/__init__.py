"""Deliverability analytics: categories, mailbox providers, windowed stats, suppressions, gaps.

Every module here is framework-free (no Kafka, no Faust) and pure where it can be: the worker
feeds records in and publishes what comes out. Every structure keyed by input values is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from streamer import resources

if TYPE_CHECKING:
    from streamer.analytics.categories import CategoryTable
    from streamer.analytics.providers import ProviderMatcher
    from streamer.config import Settings

#: The shipped analytics tables live next to the shipped rules (they are not rule files).
TABLES_DIR = resources.rules_dir()


def shipped_categories_file() -> Path:
    return TABLES_DIR / "categories.toml"


def shipped_providers_file() -> Path:
    return TABLES_DIR / "mailbox-providers.toml"


def tables_from_settings(
    settings: Settings, cache_size: int = 4096
) -> tuple[CategoryTable, ProviderMatcher]:
    """The category table and the provider matcher ``settings`` describe: the shipped files,
    then ``category_files`` / ``provider_files`` (later entries win). Every command uses these,
    so that a record gets the same category and provider everywhere. ``TableError`` names a
    bad file."""
    from streamer.analytics.categories import CategoryTable
    from streamer.analytics.providers import ProviderMatcher

    return (
        CategoryTable.load([shipped_categories_file(), *settings.category_files]),
        ProviderMatcher.from_files(
            [shipped_providers_file(), *settings.provider_files], cache_size
        ),
    )
