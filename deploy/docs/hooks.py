"""MkDocs hook: the configuration and CLI references rendered from the code at build time
(streamer.devkit.reference), in place of their markers, so the pages cannot drift from it."""

from __future__ import annotations

from typing import Any

from streamer.devkit import reference


def on_page_markdown(markdown: str, **_: Any) -> str:
    if reference.CONFIGURATION_MARKER in markdown:
        markdown = markdown.replace(
            reference.CONFIGURATION_MARKER, reference.configuration_markdown()
        )
    if reference.CLI_MARKER in markdown:
        markdown = markdown.replace(reference.CLI_MARKER, reference.cli_markdown())
    return markdown
