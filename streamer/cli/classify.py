"""``streamer validate``, ``streamer classify`` and ``streamer explain`` (no Kafka involved)."""

from __future__ import annotations

import itertools
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli import app, config_error

RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        "-r",
        help="Rule file (repeat, in load order). Default: the configured or shipped rules.",
    ),
]


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _settings(rules: list[Path] | None = None) -> Any:
    from streamer.config import ConfigError, load_settings

    try:
        # Explicit --rules replace the configured files (and need no shipped rules at all).
        return load_settings(files=list(rules) if rules else None)
    except ConfigError as exc:
        raise config_error(exc) from None


def warn_labels(ruleset: Any) -> list[str]:
    """Print a warning per misspelled predefined label (``streamer.rules.label_warnings``)."""
    from streamer.rules import label_warnings

    warnings = label_warnings(ruleset)
    for warning in warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    return warnings


def _load_classifier(rules: list[Path] | None, **opts: Any) -> Any:
    from streamer.classifier import Classifier
    from streamer.rules import RulesError, load_rules

    files = list(rules) if rules else list(_settings().rule_files)
    try:
        ruleset = load_rules(files)
        warn_labels(ruleset)
        return Classifier(ruleset, **opts)
    except RulesError as exc:
        raise _fail(f"invalid rules:\n{exc}") from None


def _rule_json(rule: Any) -> dict[str, Any] | None:
    if rule is None:
        return None
    return {"file": rule.file, "label": rule.label, "index": rule.index, "pattern": rule.pattern}


@app.command("validate")
def validate_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Rule files, in load order (default: the configured or shipped)."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="A misspelled predefined label is an error, not a warning."),
    ] = False,
) -> None:
    """Check rule files: print `OK: N patterns, M labels, K files` or every error (exit 1)."""
    from streamer.classifier import Classifier
    from streamer.rules import RulesError, load_rules

    if not files:
        files = list(_settings().rule_files)
    try:
        ruleset = load_rules(files)
        Classifier(ruleset, cache_size=0, uncategorized_cache_size=0)  # the engine must build too
    except RulesError as exc:
        for err in exc.errors:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if warn_labels(ruleset) and strict:
        typer.secho("error: misspelled labels (--strict)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    print(f"OK: {len(ruleset.rules)} patterns, {len(ruleset.labels)} labels, {len(files)} files")


def _detect(stream: Iterator[bytes], forced: bool | None) -> tuple[bool, Iterator[bytes]]:
    """(response lines?, the same lines): forced, else from the first non-blank line, which
    starts with ``{`` in a JSONL log (``[``: JSON, if not a record) and with a reply code in a
    list of response lines."""
    if forced is not None:
        return forced, stream
    seen: list[bytes] = []
    for raw in stream:
        seen.append(raw)
        if raw.strip():
            return not raw.lstrip().startswith((b"{", b"[")), itertools.chain(seen, stream)
    return False, iter(seen)


class _Run:
    """Counts of one classify run and what is printed about skipped lines."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.done = self.malformed = self.failed_inputs = 0
        self.first_skip: str | None = None
        self.reasons: Counter[str] = Counter()

    def skip(self, name: str, lineno: int, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] += 1
        where = f"{name}:{lineno}: skipped malformed line ({reason})"
        self.first_skip = self.first_skip or where
        self.progress.clear()
        print(where, file=sys.stderr)

    def all_rejected(self, lines_mode_hint: bool) -> str | None:
        """The one-line reason when input lines were given and none was accepted."""
        if self.done or not self.malformed:
            return None
        reasons = ", ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        hint = " (response lines? use --lines)" if lines_mode_hint else ""
        return f"error: every input line was rejected: {reasons}{hint}"


@app.command("classify")
def classify_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="KumoMTA logs (JSONL: plain, gzip or zstd) or response lines: files, folders "
            "(every file inside), globs; '-' or none: stdin."
        ),
    ] = None,
    rules: RulesOption = None,
    lines: Annotated[
        bool | None,
        typer.Option(
            "--lines/--records",
            help="Each line is a response line / a JSON record (default: detected per input).",
        ),
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also list every matching rule.")
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="Instead of the records: counts per label, category, provider, top rule gaps.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="--summary as one JSON object.")] = False,
    top: Annotated[int, typer.Option("--top", min=1, help="Rule gaps in --summary.")] = 10,
) -> None:
    """Classify KumoMTA log records or response lines; JSONL on stdout (or a --summary)."""
    import orjson
    from tqdm import tqdm

    from streamer.cli.summary import Summary
    from streamer.inputs import InputError, expand_inputs, read_lines
    from streamer.records import (
        CLASSIFIABLE_TYPES,
        MalformedRecord,
        decode_record,
        enrich,
        response_line,
    )

    settings = _settings(rules)
    classifier = _load_classifier(
        rules,
        cache_size=settings.cache_size,
        uncategorized_cache_size=settings.uncategorized_cache_size,
    )
    stats = Summary() if summary else None
    out = sys.stdout.buffer
    dumps = orjson.dumps
    progress = tqdm(
        unit=" lines", file=sys.stderr, disable=not sys.stderr.isatty(), mininterval=0.5
    )
    run = _Run(progress)
    records_seen = False

    def matches(text: str) -> list[dict[str, Any] | None]:
        return [_rule_json(r) for r in classifier.explain(text).matches]

    def one_line(raw: bytes) -> dict[str, Any] | str:
        """The output object of a response line, or the reason it is skipped."""
        try:
            text = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            return "not-utf8"
        result = classifier.classify(text)
        if stats is not None:
            stats.add(result.label, text)
        obj = {"line": text, "label": result.label, "rule": _rule_json(result.rule)}
        if explain:
            obj["matches"] = matches(text)
        return obj

    def one_record(raw: bytes) -> dict[str, Any] | str:
        try:
            obj = enrich(decode_record(raw, settings.max_message_bytes), classifier)
        except MalformedRecord as exc:
            return exc.reason
        if obj.get("type") in CLASSIFIABLE_TYPES:
            if stats is not None:
                label = obj["classification"]["label"]
                stats.add(label, response_line(obj["response"]), obj)
            if explain:
                obj["classification"]["matches"] = matches(response_line(obj["response"]))
        elif stats is not None:
            stats.add_other(str(obj.get("type")))
        return obj

    try:
        for item in expand_inputs(inputs or []):
            try:
                as_lines, stream = _detect(iter(read_lines(item)), lines)
                records_seen = records_seen or not as_lines
                for lineno, raw in enumerate(stream, 1):
                    progress.update(1)
                    if not raw.strip():
                        continue  # blank lines are neither records nor responses
                    obj = one_line(raw) if as_lines else one_record(raw)
                    if isinstance(obj, str):
                        run.skip(item.name, lineno, obj)
                        continue
                    run.done += 1
                    if stats is None:
                        out.write(dumps(obj))
                        out.write(b"\n")
            except InputError as exc:
                run.failed_inputs += 1
                progress.clear()
                print(str(exc), file=sys.stderr)
        if stats is not None:
            stats.skipped = run.malformed
            out.write(stats.render(top, as_json).encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        raise typer.Exit(0) from None
    finally:
        progress.close()
    print(f"classified {run.done} lines, skipped {run.malformed} malformed", file=sys.stderr)
    rejected = run.all_rejected(records_seen and lines is None)
    if rejected:
        typer.secho(rejected, fg=typer.colors.RED, err=True)
    if run.failed_inputs or rejected:
        raise typer.Exit(1)


@app.command("explain")
def explain_command(
    line: Annotated[str, typer.Argument(help="A response line, e.g. '550 5.1.1 user unknown'.")],
    rules: RulesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the winning rule for LINE and every other rule that matches it."""
    import json

    classifier = _load_classifier(rules, cache_size=0, uncategorized_cache_size=0)
    ex = classifier.explain(line)
    if as_json:
        print(
            json.dumps(
                {
                    "line": line,
                    "label": ex.label,
                    "rule": _rule_json(ex.rule),
                    "matches": [_rule_json(r) for r in ex.matches],
                    "rules_version": classifier.version,
                },
                ensure_ascii=False,
            )
        )
        return
    print(f"line:   {line!r}")
    print(f"label:  {ex.label}")
    if ex.rule is None:
        print(f"winner: none of the {len(classifier.rules)} rules matches")
    else:
        r = ex.rule
        print(f"winner: rule #{r.index} ({r.label}) {r.pattern!r}  [{r.file}]")
    others = [r for r in ex.matches if ex.rule is None or r.index != ex.rule.index]
    if others:
        print("also matching (lower priority):")
        for r in others:
            print(f"  rule #{r.index} ({r.label}) {r.pattern!r}  [{r.file}]")
    print(f"rules version: {classifier.version}")
