"""``streamer replay --since``: move a stopped consumer group back in time to reprocess a topic."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from streamer.cli import app, config_error
from streamer.cli.kafka import BootstrapOpt, _bootstrap, _err, _instant, _settings


@app.command("replay")
def replay_command(
    since: Annotated[
        str | None,
        typer.Option(
            help="Reprocess from this time: 2026-12-06T14:00:00Z, 2026-12-06, or a duration "
            "back from now (30m, 2h, 1d).",
        ),
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Consumer group to move (default: group_id).")
    ] = None,
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Topic (default: input_topic).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would move; change nothing.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Ask the broker even though the group lists members (it still refuses while "
            "they are connected).",
        ),
    ] = False,
    bootstrap: BootstrapOpt = None,
) -> None:
    """Move the workers' group back to the first record at or after --since, per partition
    (the workers must be stopped); they reprocess from there when they start again."""
    from streamer.deadletter import utc_timestamp
    from streamer.kafka.probe import Needs
    from streamer.kafka.reprocess import ReprocessError, apply, group_state, plan

    settings = _settings(bootstrap=bootstrap)
    if since is None:
        raise config_error(ValueError("--since TIME|DURATION is required"))
    when = _instant("--since", since)
    assert when is not None
    name = group or settings.group_id
    topic_name = topic or settings.input_topic
    address = _bootstrap(settings, Needs(describe=(topic_name,), group=name))
    try:
        state = group_state(settings, address, name)
        if not state.idle and not force and not dry_run:
            _err(
                f"group {name} has {state.members} live members (state {state.state}): "
                "stop its workers first (or --force)"
            )
            raise typer.Exit(1)
        moves = plan(settings, address, name, topic_name, when)
        if not dry_run:
            apply(settings, address, name, topic_name, moves)
    except ReprocessError as exc:
        _err(str(exc))
        raise typer.Exit(1) from None
    _print_moves(moves, name, topic_name, utc_timestamp(when), state, dry_run=dry_run)


def _print_moves(
    moves: list[Any], name: str, topic_name: str, since: str, state: Any, *, dry_run: bool
) -> None:
    """Each partition's move, then the totals."""
    verb = "would move" if dry_run else "moved"
    typer.echo(f"group {name}, topic {topic_name}, since {since}:")
    for m in moves:
        now = "none" if m.committed is None else str(m.committed)
        typer.echo(
            f"  partition {m.partition}: {now} -> {m.new}  "
            f"({m.again} read again, {m.to_read} to read)"
        )
    again = sum(m.again for m in moves)
    to_read = sum(m.to_read for m in moves)
    note = "" if state.idle else f"; the group has {state.members} live members"
    typer.echo(
        f"{verb} {len(moves)} partitions: {again} records read again, {to_read} to read{note}"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
