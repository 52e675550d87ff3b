"""The documentation's two generated references: configuration (from ``Settings``) and the CLI
(from the typer app). The docs site renders them at build time (``docs/hooks.py``), so they say
what the code says and cannot drift from it; tests read the same functions."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

from pydantic.fields import FieldInfo

from streamer import memory
from streamer.config import Settings, env_var

#: Where a generated reference goes in a page: the marker is replaced by the rendered text.
CONFIGURATION_MARKER = "<!-- generated: configuration -->"
CLI_MARKER = "<!-- generated: cli -->"


def _shown_default(field: FieldInfo) -> str:
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "shown_default" in extra:  # computed at start (per host, per checkout): said in words
        return str(extra["shown_default"])
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list | dict) and not value:
        return "none" if isinstance(value, list) else "`{}`"
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    return f"`{value}`"


def _kind(annotation: Any) -> str:
    """The setting's type in a user's words, and how the environment spells it."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " / ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(a) for a in args)
    if origin is list:
        return "list (env: JSON list)"
    if origin is dict:
        return "table (env: JSON object)"
    names = {"SecretStr": "secret string", "Path": "path", "PosixPath": "path"}
    name = getattr(annotation, "__name__", str(annotation))
    return names.get(name, name)


def _env_names(name: str, field: FieldInfo) -> list[str]:
    names = [env_var(name)]
    alias = field.validation_alias
    choices = getattr(alias, "choices", [])
    names += [c for c in choices if isinstance(c, str) and c.isupper() and c not in names]
    return names


def _bounds(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for attr, word in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(item, attr, None)
            if value is not None:
                words.append(f"{word} {value}")
    return ", ".join(words)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_markdown() -> str:
    """One row per setting: TOML key, environment variables, type, default, meaning."""
    derived = set(memory.derived_bounds(memory.DEFAULT_BUDGET_MB))
    rows = [
        "| key (TOML) | environment | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = _shown_default(field)
        if name in derived:
            default += ", from `memory_budget_mb`"
        kind = _kind(field.annotation)
        if bounds := _bounds(field):
            kind += f", {bounds}"
        env = ", ".join(f"`{v}`" for v in _env_names(name, field))
        meaning = field.description or ""
        rows.append(f"| `{name}` | {env} | {_cell(kind)} | {_cell(default)} | {_cell(meaning)} |")
    return "\n".join(rows) + "\n"


def cli_markdown() -> str:
    """Every command and sub-command with its usage, arguments and options, as typer prints
    them (typer's own documentation generator, the one behind ``typer ... utils docs``)."""
    import typer
    from typer.cli import get_docs_for_click
    from typer.main import get_command

    from streamer.cli import _register, app

    _register()
    command = get_command(app)
    ctx = typer.Context(command, info_name="streamer")
    docs: str = get_docs_for_click(obj=command, ctx=ctx, name="streamer", title="streamer")
    return _demote_headings(docs, levels=2)


def _demote_headings(markdown: str, levels: int) -> str:
    """Headings ``levels`` deeper, so a generated document sits under a page's own sections."""
    out, fenced = [], False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" * levels + line
        out.append(line)
    return "\n".join(out) + "\n"
