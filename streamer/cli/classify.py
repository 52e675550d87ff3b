"""``streamer validate``, ``streamer classify`` and ``streamer explain`` (no Kafka involved)."""

from __future__ import annotations

import gc
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamer.cli import app, config_error, rules_error
from streamer.text import counted

if TYPE_CHECKING:
    from streamer.offline.chunks import ChunkReader
    from streamer.offline.labeller import Labeller
    from streamer.offline.startup import ClassifySettings
    from streamer.offline.summary import Summary

RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        "-r",
        help="Rule file (repeat, in load order). Default: the configured or shipped rules.",
    ),
]


def _usage(message: str) -> typer.Exit:
    """A usage error: one line, exit status 2 (as click's own)."""
    typer.secho(f"usage error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _fail(message: str) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _settings(rules: list[Path] | None = None) -> Any:
    from streamer.config import ConfigError, load_settings

    try:
        # Explicit --rules replace the configured `files` (and need no shipped rules at all);
        # `site_files` still come first, as in the worker.
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


def _tables(settings: Any) -> tuple[Any, Any]:
    """The configured category table and provider matcher; a bad table file is one line, exit
    2 (a configuration error, as for the worker)."""
    from streamer.analytics import tables_from_settings
    from streamer.analytics.tables import TableError

    try:
        return tables_from_settings(settings)
    except TableError as exc:
        raise config_error(exc) from None


def _load_classifier(rules: list[Path] | None, **opts: Any) -> Any:
    from streamer.classifier import Classifier
    from streamer.rules import RulesError, load_rules

    files = list(_settings(rules).rule_files)  # site_files first, then --rules or `files`
    try:
        ruleset = load_rules(files)
        warn_labels(ruleset)
        return Classifier(ruleset, **opts)
    except RulesError as exc:
        raise rules_error(exc) from None


def _lean_settings(rules: list[Path] | None) -> ClassifySettings:
    """What ``classify`` uses of the settings, from the previous run with the same inputs
    when there was one (``streamer.offline.startup``: a start without pydantic)."""
    from streamer.offline.startup import ClassifySettings, remembered, settings_key

    return remembered(settings_key(rules), lambda: ClassifySettings.of(_settings(rules)))


def _lean_classifier(files: list[Path], **opts: Any) -> Any:
    """``_load_classifier`` with the parsed rules of a previous run of the same files."""
    from streamer.classifier import Classifier
    from streamer.offline.startup import remembered, rules_key
    from streamer.rules import RulesError, load_rules

    try:
        ruleset = remembered(rules_key(files), lambda: load_rules(files))
        warn_labels(ruleset)
        return Classifier(ruleset, **opts)
    except RulesError as exc:
        raise rules_error(exc) from None


@app.command("validate")
def validate_command(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Rule files, in load order (default: the configured or shipped)."),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Warnings are errors: a misspelled predefined label, a label given twice in "
            "one JSON file.",
        ),
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
        for warning in exc.warnings:  # beside the errors: a misspelled label may be the cause
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        for err in exc.errors:
            typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    if warn_labels(ruleset) and strict:
        typer.secho("error: warnings above (--strict)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    print(
        f"OK: {counted(len(ruleset.rules), 'pattern')}, {counted(len(ruleset.labels), 'label')}, "
        f"{counted(len(files), 'file')}"
    )


class _Run:
    """Counts of one classify run and what is printed about skipped lines."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.done = self.malformed = self.failed_inputs = 0
        self.reasons: Counter[str] = Counter()

    def skip(self, name: str, lineno: int, reason: str) -> None:
        self.malformed += 1
        self.reasons[reason] += 1
        self.progress.clear()
        print(f"{name}:{lineno}: skipped malformed line ({reason})", file=sys.stderr)

    def all_rejected(self, lines_mode_hint: bool) -> str | None:
        """The one-line reason when input lines were given and none was accepted."""
        if self.done or not self.malformed:
            return None
        reasons = ", ".join(f"{n} {r}" for r, n in self.reasons.most_common())
        hint = " (response lines? use --lines)" if lines_mode_hint else ""
        return f"error: every input line was rejected: {reasons}{hint}"


def _jobs(value: str) -> int:
    from streamer.offline.pool import default_jobs

    if value == "auto":
        return default_jobs()
    try:
        jobs = int(value)
    except ValueError:
        raise typer.BadParameter("a number of processes or 'auto'", param_hint="'--jobs'") from None
    if jobs < 1:
        raise typer.BadParameter("at least 1", param_hint="'--jobs'")
    return jobs


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
    top: Annotated[
        int | None, typer.Option("--top", min=1, help="Rule gaps in --summary (default 10).")
    ] = None,
    jobs: Annotated[
        str,
        typer.Option(
            "--jobs",
            "-j",
            help="Processes: 'auto' (one per core) or N; 1, or an input of one chunk (4 MB) "
            "or less, runs in this process. Output order is input order either way.",
        ),
    ] = "auto",
) -> None:
    """Classify KumoMTA log records or response lines; JSONL on stdout (or a --summary)."""
    from streamer.inputs import expand_inputs
    from streamer.offline.chunks import ChunkReader

    _check_summary_flags(summary, explain=explain, as_json=as_json, top=top)
    top = top or 10
    processes = _jobs(jobs)
    labeller, stats = _labeller(_lean_settings(rules), explain=explain, summary=summary)
    reader = ChunkReader(expand_inputs(inputs or []), lines)
    with _startup_frozen():
        run = _classify(reader, labeller, processes, stats, top, as_json)
    done = counted(run.done, "line")
    print(f"classified {done}, skipped {run.malformed} malformed", file=sys.stderr)
    rejected = run.all_rejected(reader.records_seen and lines is None)
    if rejected:
        typer.secho(rejected, fg=typer.colors.RED, err=True)
    if run.failed_inputs or rejected:
        raise typer.Exit(1)


@contextmanager
def _startup_frozen() -> Iterator[None]:
    """What start-up built (modules, rules, compiled sets) lives as long as the run: out of the
    garbage collector's sight, its collections scan only what the labelling makes (and the
    forked workers of --jobs share those pages untouched); ~4-8% of the CPU of 400k response
    lines. Given back after the run (a caller in the same process, e.g. a test)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _labeller(settings: Any, *, explain: bool, summary: bool) -> tuple[Labeller, Summary | None]:
    """The labeller of ``classify`` (and its ``--summary`` counts) from the settings."""
    from streamer.offline.labeller import Labeller

    classifier = _lean_classifier(
        settings.rule_files,
        cache_size=settings.cache_size,
        uncategorized_cache_size=settings.uncategorized_cache_size,
    )
    tables = _tables(settings) if summary or settings.analytics else None
    stats = None
    if summary and tables:
        from streamer.offline.summary import Summary

        stats = Summary(*tables)
    labeller = Labeller(
        classifier,
        max_bytes=settings.max_message_bytes,
        explain=explain,
        summary=stats,
        tables=tables if settings.analytics else None,  # as the worker's output
    )
    return labeller, stats


def _check_summary_flags(summary: bool, *, explain: bool, as_json: bool, top: int | None) -> None:
    """Options that only make sense with (or without) ``--summary``: a usage error, exit 2."""
    misplaced = [flag for flag, given in (("--json", as_json), ("--top", top)) if given]
    if misplaced and not summary:
        verb = "apply" if len(misplaced) > 1 else "applies"
        raise _usage(f"{' and '.join(misplaced)} only {verb} to --summary")
    if explain and summary:
        raise _usage("--explain lists the rules of each record; --summary has none to list")


class _NoProgress:
    """What ``_classify`` asks of a progress bar, where none is shown (no terminal)."""

    def update(self, n: int) -> None:
        pass

    def clear(self) -> None:
        pass

    def close(self) -> None:
        pass


def _progress() -> Any:
    """A progress bar on a terminal's stderr (tqdm, imported only then: a leaner start)."""
    if not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(unit=" lines", file=sys.stderr, mininterval=0.5)


def _classify(
    reader: ChunkReader,
    labeller: Labeller,
    jobs: int,
    stats: Summary | None,
    top: int,
    as_json: bool,
) -> _Run:
    """Label every chunk (``jobs`` processes) and write the results in input order: one
    write per chunk; skipped lines and unreadable inputs on stderr; the summary at the end."""
    from streamer.offline.chunks import InputFailed
    from streamer.offline.pool import label_all

    out = sys.stdout.buffer
    progress = _progress()
    run = _Run(progress)
    results = label_all(reader, labeller, jobs)
    try:
        for result in results:
            if isinstance(result, InputFailed):
                run.failed_inputs += 1
                progress.clear()
                print(result.message, file=sys.stderr)
                continue
            progress.update(result.lines)
            for lineno, reason in result.skips:
                run.skip(result.name, lineno, reason)
            run.done += result.done
            if stats is not None and result.tally is not None:
                stats.merge(result.tally)
            else:
                result.write_to(out)
        if stats is not None:
            stats.skipped = run.malformed
            out.write(stats.render(top, as_json).encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        raise typer.Exit(0) from None
    finally:
        results.close()  # stops the worker processes, if any
        progress.close()
    return run


#: What ``explain`` adds after the evidence, where the evidence is weak.
EVIDENCE_NOTES = {
    "reply-code": " (only the reply code matched: a rule gap; by default no address is "
    "suppressed on it)"
}


@app.command("explain")
def explain_command(
    line: Annotated[str, typer.Argument(help="A response line, e.g. '550 5.1.1 user unknown'.")],
    rules: RulesOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Show the winning rule for LINE and every other rule that matches it."""
    import json

    from streamer.analytics.categories import HARD
    from streamer.evidence import may_suppress
    from streamer.offline.labeller import rule_json as _rule_json

    classifier = _load_classifier(rules, cache_size=0, uncategorized_cache_size=0)
    ex = classifier.explain(line)
    settings = _settings(rules)
    categories = _tables(settings)[0]
    code = int(line[:3]) if line[:3].isdigit() else None  # the table takes its class
    category = categories.category(ex.label, code)
    action = categories.action(ex.label, code)
    if category == HARD and not may_suppress(ex.evidence, frozenset(settings.suppress_evidence)):
        # what the worker does with this line, not what the label would ask for
        action = f"none: {ex.evidence} evidence suppresses no address (suppress_evidence)"
    if as_json:
        print(
            json.dumps(
                {
                    "line": line,
                    "label": ex.label,
                    "rule": _rule_json(ex.rule),
                    "evidence": ex.evidence,
                    "category": category,
                    "action": action,
                    "matches": [_rule_json(r) for r in ex.matches],
                    "rules_version": classifier.version,
                },
                ensure_ascii=False,
            )
        )
        return
    print(f"line:   {line!r}")
    print(f"label:  {ex.label}")
    print(f"category: {category}" + (f" (action: {action})" if action else ""))
    if ex.rule is None:
        print(f"winner: none of the {len(classifier.rules)} rules matches")
    else:
        r = ex.rule
        print(f"winner: rule #{r.index} ({r.label}) {r.pattern!r}  [{r.file}]")
        print(f"evidence: {ex.evidence}{EVIDENCE_NOTES.get(ex.evidence or '', '')}")
    others = [r for r in ex.matches if ex.rule is None or r.index != ex.rule.index]
    if others:
        print("also matching (lower priority):")
        for r in others:
            print(f"  rule #{r.index} ({r.label}) {r.pattern!r}  [{r.file}]")
    print(f"rules version: {classifier.version}")
