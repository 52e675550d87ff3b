"""The ``streamer`` command line. Each concern registers its commands from its own module."""

from __future__ import annotations

import errno
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperOption

from streamer.cli import coercion

if TYPE_CHECKING:
    from streamer.kafka.probe import KafkaProblem

app = typer.Typer(
    name="streamer",
    help="Classify MTA delivery-failure events (KumoMTA bounce-classifier semantics).",
    no_args_is_help=True,
    # `streamer --install-completion` / `--show-completion`: bash, zsh, fish, PowerShell.
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _no_type_for_flags() -> None:
    """Typer 0.29's rich help shows ``<bool>`` in the type column of every plain flag
    (``--json``, ``--help``), where it says nothing a user needs: show no type for flags."""
    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_no_type_for_flags()
coercion.install()  # plain option values without pydantic: a leaner start


def config_first(argv: list[str]) -> list[str]:
    """``argv`` with ``--config FILE`` (or ``--config=FILE``) moved before the command, so that
    ``streamer worker --config x.toml`` works like ``streamer --config x.toml worker``: the
    option belongs to the program, and users type it after the command name as often as
    before. Nothing after a ``--`` is touched."""
    end = argv.index("--") if "--" in argv else len(argv)
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < end:
        arg = argv[i]
        if arg == "--config" and i + 1 < end:
            moved += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith("--config="):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return [*moved, *rest, *argv[end:]]


def _print_version(value: bool) -> None:
    if value:
        from streamer import __version__

        typer.echo(f"streamer {__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config file (also STREAMER_CONFIG)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    if config is not None:
        os.environ["STREAMER_CONFIG"] = str(config)
    for warning in _unknown_variables():
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)


def _unknown_variables() -> list[str]:
    """``config.unknown_variables`` of this environment, remembered from the previous run with
    the same variables (``streamer.offline.startup``): a start without pydantic."""
    if not any(var.startswith("STREAMER_") for var in os.environ):
        return []  # nothing to check: the settings need not even be imported
    from streamer.offline.startup import remembered, settings_key

    def check() -> list[str]:
        from streamer.config import unknown_variables

        return unknown_variables(os.environ)

    return remembered(settings_key(None, "variables"), check)


def config_error(exc: Exception) -> typer.Exit:
    """A configuration error: one red line on stderr, exit status 2 (never a traceback)."""
    message = " ".join(str(exc).split())  # one line, whatever the message held
    typer.secho(f"configuration error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def rules_error(exc: Exception) -> typer.Exit:
    """Rules that do not load (a configuration error too): one red line per problem, each
    naming file, line and pattern, exit status 2."""
    for problem in getattr(exc, "errors", None) or [str(exc)]:
        typer.secho(f"rules: {problem}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def kafka_error(exc: KafkaProblem) -> typer.Exit:
    """Kafka that cannot be used: one red line, and the exit status of its kind
    (``streamer.exits``: 75 only when waiting may help)."""
    typer.secho(f"kafka: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(exc.exit_code)


#: Commands whose module is all a run of them needs (a lean start: the other modules build
#: their options from the settings, which imports pydantic): command -> module.
LEAN_COMMANDS = {"classify": "classify", "validate": "classify", "explain": "classify"}


def _command(args: list[str]) -> str | None:
    """The command named in ``args`` (global options first, as ``config_first`` leaves them)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--config", "-c"):
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg
    return None


def _register(command: str | None = None) -> None:
    """Add the commands to ``app``: only ``command``'s module when it is in
    :data:`LEAN_COMMANDS`, else every one."""
    if command in LEAN_COMMANDS:
        importlib.import_module(f"streamer.cli.{LEAN_COMMANDS[command]}")
        return
    # Imported for their side effect of adding commands to `app`.
    from streamer.cli import (  # noqa: F401
        bench,
        classify,
        demo,
        dlq,
        gaps,
        kafka,
        replay,
        report,
        suppressions,
        tail,
        worker,
    )


#: Errors of a write that no retry cures: the output is lost, say so in one line.
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}


def main() -> None:
    args = config_first(sys.argv[1:])
    _register(_command(args))
    try:
        try:
            app(args=args, prog_name="streamer")
        finally:
            sys.stdout.flush()  # a full disk shows here when the output was buffered
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        # what is still buffered can never be written either: drop it, quietly, at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        typer.secho(f"cannot write output: {exc.strerror}", fg=typer.colors.RED, err=True)
        raise SystemExit(1) from None
    except Exception as exc:
        # Every command reports its own configuration errors; this is the safety net (the
        # settings' module is only looked at when it was loaded: a lean start skips it).
        config = sys.modules.get("streamer.config")
        if config is not None and isinstance(exc, config.ConfigError):
            raise SystemExit(config_error(exc).exit_code) from None
        # Kafka that cannot be used, wherever a command met it (the probe module is only
        # looked at when it was loaded: commands without Kafka do not pay for its import).
        probe = sys.modules.get("streamer.kafka.probe")
        if probe is None or not isinstance(exc, probe.KafkaProblem):
            raise
        raise SystemExit(kafka_error(exc).exit_code) from None
