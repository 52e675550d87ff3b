"""``streamer gaps``: the responses no rule classifies, as templates (no Kafka involved)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli import app
from streamer.cli.classify import RulesOption, _load_classifier
from streamer.text import counted


def _error(message: str, code: int = 1) -> typer.Exit:
    """One line on stderr; exit 1 (an input or output that fails), 2 for a usage error."""
    print(message, file=sys.stderr)
    return typer.Exit(code)


def _read_topic(collector: Any, topic: str, bootstrap: str | None) -> None:
    """The templates in the latest stats row per key (summed over keys) of ``topic``."""
    from streamer.cli.kafka import _bootstrap, _settings
    from streamer.report import latest_rows, read_stats_topic

    settings = _settings(bootstrap=bootstrap)
    rows = latest_rows(read_stats_topic(settings, _bootstrap(settings), topic))
    for row in rows:
        collector.responses += sum(row.get("labels", {}).values())
        for gap in row.get("gaps", []):
            collector.add_template(gap["template"], int(gap["count"]), gap.get("example", ""))


@app.command("gaps")
def gaps_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="KumoMTA logs (JSONL: plain, gzip, zstd) or response lines: files, folders, "
            "globs; '-' or none: stdin."
        ),
    ] = None,
    top: Annotated[int, typer.Option("--top", "-n", min=1, help="How many templates.")] = 20,
    toml_out: Annotated[
        Path | None, typer.Option("--toml", help="Also write a rules-file skeleton here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    rules: RulesOption = None,
    topic: Annotated[
        str | None,
        typer.Option("--topic", help="Read the gaps the workers counted in this stats topic."),
    ] = None,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers.")
    ] = None,
) -> None:
    """The most frequent rule gaps (responses no rule classifies, or only a reply-code fallback
    does) as templates, with a count and a real example."""
    from streamer.analytics.gaps import GapCollector, render_toml

    collector = GapCollector(_load_classifier(rules))
    if topic is not None:
        if inputs:
            raise _error("give either files or --topic, not both", 2)
        _read_topic(collector, topic, bootstrap)
    else:
        _read_inputs(collector, inputs or [])
    gaps = collector.top(top)
    if toml_out is not None:
        try:
            toml_out.write_text(render_toml(gaps), encoding="utf-8")
        except OSError as exc:
            raise _error(f"{toml_out}: cannot write: {exc.strerror or exc}") from None
    if as_json:
        print(json.dumps(_gaps_json(collector, gaps), ensure_ascii=False))
        return
    _print_gaps(collector, gaps, from_topic=topic is not None)
    if toml_out is not None:
        print(f"skeleton written to {toml_out}", file=sys.stderr)


def _read_inputs(collector: Any, inputs: list[str]) -> None:
    """Feed every input to ``collector``; an unreadable one is one line, before any work."""
    from streamer.analytics.gaps import InputError
    from streamer.inputs import expand_inputs, read_lines

    items = expand_inputs(inputs)
    for item in items:  # fail before any work: one line per problem, no traceback
        if item.error is not None:
            raise _error(f"{item.name}: cannot read: {item.error}")
    for item in items:
        try:
            collector.feed_stream(read_lines(item))
        except InputError as exc:
            raise _error(str(exc)) from None


def _gaps_json(collector: Any, gaps: list[Any]) -> dict[str, Any]:
    from streamer.analytics.gaps import template_pattern

    return {
        "responses": collector.responses,
        "gaps_total": collector.gaps,
        "uncategorized": collector.uncategorized,
        "reply_code_only": collector.reply_code_only,
        "skipped": collector.skipped,
        "gaps": [
            {
                "template": g.template,
                "count": g.count,
                "example": g.example,
                "pattern": template_pattern(g.template),
            }
            for g in gaps
        ],
    }


def _print_gaps(collector: Any, gaps: list[Any], *, from_topic: bool) -> None:
    kinds = (
        ""
        if from_topic  # stats rows count the gaps without telling the two kinds apart
        else f" ({collector.uncategorized} uncategorized, {collector.reply_code_only} "
        "classified by the reply code alone)"
    )
    print(
        f"{collector.gaps} of {collector.responses} responses are rule gaps{kinds}, "
        f"{len(collector.summary)} templates; top {len(gaps)}:"
    )
    for g in gaps:
        print(f"{g.count:8d}  {g.template}")
        print(f"{'':8}  e.g. {g.example}")
    if collector.malformed:
        n = collector.malformed
        print(f"skipped {counted(n, 'malformed line')}", file=sys.stderr)
