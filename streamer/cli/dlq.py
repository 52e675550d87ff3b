"""``streamer dlq``: read the dead-letter topic (list, summary, show) and re-drive it (replay)."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamer.cli import app, config_error
from streamer.cli.kafka import BootstrapOpt, _bootstrap, _err, _instant, _settings
from streamer.config import Settings

if TYPE_CHECKING:
    from streamer.kafka.deadletters import Selection
    from streamer.kafka.probe import Needs

dlq_app = typer.Typer(
    help="Dead letters: list and summarise them by reason, show one, replay them after a fix.",
    no_args_is_help=True,
)
app.add_typer(dlq_app, name="dlq")

TopicArg = Annotated[
    str | None, typer.Argument(help="Dead-letter topic (default: the configured dlq_topic).")
]
ReasonOpt = Annotated[
    list[str] | None, typer.Option("--reason", "-r", help="Only this reason (repeat).")
]
SinceOpt = Annotated[
    str | None,
    typer.Option(help="Only dead letters from this time on (2026-12-06T14:00:00Z, 2h, 1d)."),
]
UntilOpt = Annotated[
    str | None, typer.Option(help="Only dead letters up to this time (same forms as --since).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON instead of text.")]

#: Longest detail shown on a ``list`` line.
DETAIL_CHARS = 80


def _selection(reasons: list[str] | None, since: str | None, until: str | None) -> Selection:
    from streamer.kafka.deadletters import Selection

    return Selection(
        frozenset(reasons or ()), _instant("--since", since), _instant("--until", until)
    )


def _topic(settings: Settings, topic: str | None) -> str:
    return topic or settings.dlq_topic or f"{settings.input_topic}.dlq"


def _needs(**what: Any) -> Needs:
    """What the command does, checked against the ACLs before it starts (``probe.Needs``)."""
    from streamer.kafka.probe import Needs

    return Needs(**what)


def _fail(exc: Exception) -> typer.Exit:
    _err(str(exc))
    return typer.Exit(1)


@dlq_app.command("list")
def dlq_list(
    topic: TopicArg = None,
    reasons: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Print at most N dead letters.")
    ] = None,
    as_json: JsonOpt = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """One line per dead letter: partition:offset, time, reason, source, key, detail.

    Oldest first per partition, up to the end the topic had when the command started."""
    from streamer.kafka.deadletters import DeadLetterError, read_dead_letters, safe_text

    settings = _settings(bootstrap=bootstrap)
    selection = _selection(reasons, since, until)
    name = _topic(settings, topic)
    address = _bootstrap(settings, _needs(read=(name,)))
    printed = read = 0
    try:
        for letter, selected in read_dead_letters(settings, address, name, selection):
            read += 1
            if not selected:
                continue
            if as_json:
                typer.echo(json.dumps(letter.as_json(), ensure_ascii=False))
            else:
                detail = safe_text(letter.detail or "")
                if len(detail) > DETAIL_CHARS:
                    detail = detail[: DETAIL_CHARS - 1] + "…"
                key = "-" if letter.key is None else safe_text(letter.key)
                typer.echo(
                    f"{letter.ref}  {letter.when_text}  {letter.reason}  {letter.source}  "
                    f"key={key}" + (f"  {detail}" if detail else "")
                )
            printed += 1
            if limit is not None and printed >= limit:
                break
    except DeadLetterError as exc:
        raise _fail(exc) from None
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        raise typer.Exit(0) from None
    typer.echo(f"{printed} dead letters listed ({read} read) from {name}", err=True)


@dlq_app.command("summary")
def dlq_summary(
    topic: TopicArg = None,
    reasons: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonOpt = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Dead letters counted by reason (first and last time of each) and by source topic."""
    from streamer.deadletter import utc_timestamp
    from streamer.kafka.deadletters import DeadLetterError, summarise

    settings = _settings(bootstrap=bootstrap)
    selection = _selection(reasons, since, until)
    name = _topic(settings, topic)
    address = _bootstrap(settings, _needs(read=(name,)))
    try:
        summary = summarise(settings, address, name, selection)
    except DeadLetterError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(summary.as_json(), indent=2, ensure_ascii=False))
        return
    typer.echo(f"{name}: {summary.selected} dead letters ({summary.read} read)")
    if not summary.reasons:
        return
    width = max(len("reason"), *(len(r) for r in summary.reasons))
    typer.echo(f"  {'reason':<{width}}  {'count':>7}  {'first':<24}  last")
    for reason, row in summary.by_count():
        first = utc_timestamp(row.first) if row.first is not None else "-"
        last = utc_timestamp(row.last) if row.last is not None else "-"
        typer.echo(f"  {reason:<{width}}  {row.count:>7}  {first:<24}  {last}")
    typer.echo(
        "  by source topic: " + ", ".join(f"{t} {n}" for t, n in summary.sources().most_common())
    )


def _ref(ref: str | None, partition: int | None, offset: int | None) -> tuple[int, int]:
    if ref is not None:
        left, sep, right = ref.partition(":")
        if not sep or not left.isdigit() or not right.isdigit():
            raise config_error(ValueError(f"{ref!r} is not PARTITION:OFFSET (e.g. 0:42)"))
        return int(left), int(right)
    if partition is None or offset is None:
        raise config_error(ValueError("give PARTITION:OFFSET or --partition and --offset"))
    return partition, offset


@dlq_app.command("show")
def dlq_show(
    ref: Annotated[
        str | None, typer.Argument(help="PARTITION:OFFSET of the dead letter (see dlq list).")
    ] = None,
    partition: Annotated[int | None, typer.Option("--partition", "-p", min=0)] = None,
    offset: Annotated[int | None, typer.Option("--offset", "-o", min=0)] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Dead-letter topic (default: dlq_topic).")
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """One dead letter: its headers, key and payload (indented JSON, or escaped text)."""
    from streamer.kafka.deadletters import DeadLetterError, fetch_one, pretty_payload, safe_text

    settings = _settings(bootstrap=bootstrap)
    p, o = _ref(ref, partition, offset)
    name = _topic(settings, topic)
    address = _bootstrap(settings, _needs(read=(name,)))
    try:
        letter = fetch_one(settings, address, name, p, o)
    except DeadLetterError as exc:
        raise _fail(exc) from None
    what, payload = pretty_payload(letter.value)
    lines = [
        f"dead letter {name} {letter.ref}",
        f"  reason:  {safe_text(letter.reason)}",
        f"  source:  {safe_text(letter.source)}",
        f"  time:    {letter.when_text}",
        f"  detail:  {safe_text(letter.detail or '-')}",
        f"  key:     {'-' if letter.key is None else safe_text(letter.key)}",
        "headers:",
        *(f"  {safe_text(k)}: {safe_text(v)}" for k, v in letter.headers),
        f"payload ({what}):",
        payload,
    ]
    typer.echo("\n".join(lines))


class _ReplayProgress:
    """What ``dlq replay`` prints as it goes: a progress line at most once a second (stderr),
    and in a dry run each dead letter it would replay (stdout)."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.last_report = 0.0

    def callbacks(self) -> dict[str, Any]:
        return {"on_batch": self.on_batch, "on_letter": self.on_letter}

    def on_batch(self, result: Any) -> None:
        now = time.monotonic()
        if now - self.last_report >= 1.0 or result.remaining == 0:
            self.last_report = now
            verb = "would replay" if self.dry_run else "replayed"
            typer.echo(
                f"dlq replay: {verb} {result.replayed}, read {result.read}, "
                f"about {result.remaining} left",
                err=True,
            )

    def on_letter(self, letter: Any, target: str) -> None:
        if self.dry_run:
            typer.echo(f"{letter.ref}  {letter.when_text}  {letter.reason}  -> {target}")


@dlq_app.command("replay")
def dlq_replay(
    topic: TopicArg = None,
    reasons: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Target topic (default: each dead letter's source topic, else input_topic).",
        ),
    ] = None,
    group: Annotated[
        str, typer.Option(help="Consumer group that remembers how far the replay got.")
    ] = "streamer-dlq-replay",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be replayed; change nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Dead letters per transaction.")
    ] = 500,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="At most N dead letters per second.")
    ] = None,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Produce the selected dead letters' original records again (exactly once, resumable)."""
    from streamer.kafka.deadletters import DeadLetterError, ReplayOptions, replay

    settings = _settings(bootstrap=bootstrap)
    selection = _selection(reasons, since, until)
    name = _topic(settings, topic)
    # the targets named by the dead letters' headers are checked as they come
    address = _bootstrap(settings, _needs(read=(name,), write=(to,) if to else (), group=group))
    options = ReplayOptions(group=group, to=to, dry_run=dry_run, batch_size=batch_size, rate=rate)
    progress = _ReplayProgress(dry_run)
    try:
        result = replay(settings, address, name, selection, options, **progress.callbacks())
    except DeadLetterError as exc:
        raise _fail(exc) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    targets = ", ".join(f"{t} {n}" for t, n in sorted(result.targets.items())) or "none"
    verb = "would replay" if dry_run else "replayed"
    note = f", {result.left} partitions stopped at --until" if result.left else ""
    typer.echo(
        f"{verb} {result.replayed} dead letters of {result.read} read from {name} "
        f"({result.skipped} not selected{note}); to: {targets}; group {group}"
        + (" (dry run: nothing produced or committed)" if dry_run else "")
    )
