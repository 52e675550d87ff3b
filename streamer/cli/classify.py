"""``streamer validate``, ``streamer classify`` and ``streamer explain`` (no Kafka involved)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Annotated, Any

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


def _open_inputs(inputs: list[str]) -> Iterator[tuple[str, IO[bytes] | None, str | None]]:
    """Yields (name, stream, error) per input; ``-`` or no input means stdin."""
    if not inputs:
        inputs = ["-"]
    for name in inputs:
        if name == "-":
            yield "<stdin>", sys.stdin.buffer, None
            continue
        try:
            fh = open(name, "rb")  # noqa: SIM115 - closed below, after the caller is done
        except OSError as exc:
            yield name, None, exc.strerror or str(exc)
            continue
        try:
            yield name, fh, None
        finally:
            fh.close()


@app.command("classify")
def classify_command(
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Input files (default or '-': stdin).")
    ] = None,
    rules: RulesOption = None,
    lines: Annotated[
        bool, typer.Option("--lines", help="Each input line is a response line, not a record.")
    ] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Also list every matching rule.")
    ] = False,
) -> None:
    """Classify KumoMTA JSONL records (or response lines with --lines); JSONL on stdout."""
    import orjson
    from tqdm import tqdm

    from streamer.records import CLASSIFIABLE_TYPES, MalformedRecord, decode_record, enrich

    settings = _settings(rules)
    classifier = _load_classifier(
        rules,
        cache_size=settings.cache_size,
        uncategorized_cache_size=settings.uncategorized_cache_size,
    )
    out = sys.stdout.buffer
    dumps = orjson.dumps
    done = malformed = 0
    failed_inputs = 0
    progress = tqdm(
        unit=" lines", file=sys.stderr, disable=not sys.stderr.isatty(), mininterval=0.5
    )

    def skip(name: str, lineno: int, reason: str) -> None:
        nonlocal malformed
        malformed += 1
        progress.clear()
        print(f"{name}:{lineno}: skipped malformed line ({reason})", file=sys.stderr)

    def matches(text: str) -> list[dict[str, Any] | None]:
        return [_rule_json(r) for r in classifier.explain(text).matches]

    try:
        for name, stream, error in _open_inputs(inputs or []):
            if stream is None:
                failed_inputs += 1
                print(f"{name}: cannot read: {error}", file=sys.stderr)
                continue
            for lineno, raw in enumerate(stream, 1):
                progress.update(1)
                if lines:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        skip(name, lineno, "not-utf8")
                        continue
                    text = text.removesuffix("\n").removesuffix("\r")
                    result = classifier.classify(text)
                    obj: dict[str, Any] = {
                        "line": text,
                        "label": result.label,
                        "rule": _rule_json(result.rule),
                    }
                    if explain:
                        obj["matches"] = matches(text)
                else:
                    if not raw.strip():
                        continue  # blank lines are not records
                    try:
                        obj = enrich(decode_record(raw, settings.max_message_bytes), classifier)
                    except MalformedRecord as exc:
                        skip(name, lineno, exc.reason)
                        continue
                    if explain and obj.get("type") in CLASSIFIABLE_TYPES:
                        from streamer.records import response_line

                        obj["classification"]["matches"] = matches(response_line(obj["response"]))
                out.write(dumps(obj))
                out.write(b"\n")
                done += 1
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        raise typer.Exit(0) from None
    finally:
        progress.close()
    print(f"classified {done} lines, skipped {malformed} malformed", file=sys.stderr)
    if failed_inputs:
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
