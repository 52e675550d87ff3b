"""CLI commands for Kafka operations: the local broker, topic creation, replaying JSONL files."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamer.cli import app, config_error, kafka_error
from streamer.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from streamer.kafka.probe import Needs

kafka_app = typer.Typer(
    help="The embedded local Apache Kafka broker (single KRaft node on 127.0.0.1).",
    no_args_is_help=True,
)
topics_app = typer.Typer(help="Kafka topics used by streamer.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap",
        "-b",
        help="Kafka bootstrap servers (default: config/KAFKA_BOOTSTRAP, else the local broker).",
    ),
]


def _err(message: str) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise config_error(exc) from None


def _instant(option: str, text: str | None) -> float | None:
    """A time option (RFC 3339 time or date, or a duration back from now) in epoch seconds;
    a value that is neither is a configuration error (one line, exit 2)."""
    from streamer.timespec import parse_instant

    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise config_error(ValueError(f"{option}: {exc}")) from None


def _bootstrap(settings: Settings, needs: Needs | None = None) -> str:
    """The bootstrap address, checked to answer and (``needs``) to allow what the command does:
    else a ``kafka:`` line and the exit status of the problem (``streamer.exits``)."""
    from streamer.devkit.broker import BrokerError, ensure_broker
    from streamer.kafka.probe import KafkaProblem

    try:
        return ensure_broker(settings, needs=needs)
    except BrokerError as exc:  # the local broker did not start: its log says why
        _err(str(exc))
        raise typer.Exit(1) from exc
    except KafkaProblem as exc:
        raise kafka_error(exc) from None


@kafka_app.command("start")
def kafka_start(
    port: Annotated[
        int | None, typer.Option(help="Broker port (default: the previous one, else random).")
    ] = None,
    controller_port: Annotated[int | None, typer.Option(help="KRaft controller port.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the broker.")] = 120.0,
    secure: Annotated[
        bool,
        typer.Option(
            "--secure",
            help="Also a SASL_SSL listener (TLS, SCRAM-SHA-512 users, ACLs); prints its "
            "address and a config file for the worker principal.",
        ),
    ] = False,
) -> None:
    """Start the local broker (or reuse the running one) and print its bootstrap address."""
    from streamer.devkit.broker import BrokerError, LocalBroker

    settings = _settings()
    broker = LocalBroker.for_settings(settings)
    broker.start_timeout = timeout
    started_at = time.monotonic()
    try:
        state, started = broker.start(port=port, controller_port=controller_port, secure=secure)
    except BrokerError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    verb = "started" if started else "already running"
    typer.echo(
        f"Kafka {state.kafka_version} {verb} (pid {state.pid}, "
        f"{time.monotonic() - started_at:.1f}s); log: {state.log_file}",
        err=True,
    )
    if not secure:
        typer.echo(state.bootstrap)
        return
    _provision(settings, state)


def _provision(settings: Settings, state: Any) -> None:
    """Users, topics and ACLs of the secured listener; prints its address and config file."""
    from pathlib import Path

    from streamer.devkit import security

    assert state.secure_bootstrap and state.security_dir
    files = security.SecurityFiles(Path(state.security_dir))
    try:
        configs = security.provision(files, state.bootstrap, state.secure_bootstrap, settings)
    except security.SecurityError as exc:
        _err(f"securing the local broker failed: {exc}")
        raise typer.Exit(1) from exc
    typer.echo(
        f"SASL_SSL (SCRAM-SHA-512) on {state.secure_bootstrap}, CA {files.ca_cert}; "
        f"users {security.WORKER_USER} (ACLs for topics {settings.input_topic} ...) and "
        f"{security.ADMIN_USER} (super user): --config {configs[security.WORKER_USER]} or "
        f"{configs[security.ADMIN_USER]}; PLAINTEXT {state.bootstrap} stays open to loopback "
        "clients as a super user (development only)",
        err=True,
    )
    typer.echo(state.secure_bootstrap)
    typer.echo(str(configs[security.WORKER_USER]))


@kafka_app.command("stop")
def kafka_stop(
    timeout: Annotated[float, typer.Option(help="Seconds to wait before SIGKILL.")] = 30.0,
) -> None:
    """Stop the local broker (SIGTERM, then SIGKILL after --timeout). Its data is kept."""
    from streamer.devkit.broker import BrokerError, LocalBroker

    try:
        stopped = LocalBroker.for_settings(_settings()).stop(timeout=timeout)
    except BrokerError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    typer.echo("stopped" if stopped else "not running")


@kafka_app.command("status")
def kafka_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Print the local broker's state; exit 1 unless it runs and answers."""
    from streamer.devkit.broker import LocalBroker

    status = LocalBroker.for_settings(_settings()).status()
    state = status.state
    if as_json:
        doc: dict[str, Any] = {"running": status.running, "detail": status.detail}
        doc.update(vars(state) if state else {})
        typer.echo(json.dumps(doc, indent=2))
    elif state is None:
        typer.echo("local Kafka broker: never started")
    else:
        what = "running" if status.running else f"not running ({status.detail})"
        if status.alive and not status.answering:
            what = f"process alive but not answering ({status.detail})"
        typer.echo(
            f"local Kafka broker: {what}\n"
            f"  bootstrap:  {state.bootstrap}\n"
            f"  pid:        {state.pid if state.pid is not None else 'none (stopped)'}\n"
            f"  version:    {state.kafka_version}\n"
            f"  controller: 127.0.0.1:{state.controller_port}\n"
            + (f"  sasl_ssl:   {state.secure_bootstrap}\n" if state.secure_bootstrap else "")
            + f"  data:       {state.data_dir}\n"
            f"  log:        {state.log_file}"
        )
    if not status.running:
        raise typer.Exit(1)


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOpt = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Partitions (default: settings.partitions).")
    ] = None,
    replication_factor: Annotated[
        int | None, typer.Option(min=1, help="Replication (default: settings.replication_factor).")
    ] = None,
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Topics to create (default: input, output, DLQ, topic:NAME target)."),
    ] = None,
) -> None:
    """Create the topics streamer uses; existing topics are left as they are."""
    from streamer.kafka.admin import TopicError, create_topics, topic_partitions

    settings = _settings(
        bootstrap=bootstrap, partitions=partitions, replication_factor=replication_factor
    )
    address = _bootstrap(settings)
    try:
        created = create_topics(settings, address, names or None)
        counts = topic_partitions(settings, address)
    except TopicError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    for name, new in created.items():
        parts = counts.get(name)
        note = ""
        if not new and parts is not None and parts != settings.partitions:
            note = f" (wanted {settings.partitions}: partitions are never changed here)"
        typer.echo(f"{'created' if new else 'exists '}  {name}  partitions={parts}{note}")


@topics_app.command("list")
def topics_list(bootstrap: BootstrapOpt = None) -> None:
    """List the topics (internal ones excluded) with their partition counts."""
    from streamer.kafka.admin import default_topics, topic_partitions
    from streamer.kafka.probe import Needs

    settings = _settings(bootstrap=bootstrap)
    # the topics streamer uses must be visible: a principal without ACLs would list nothing
    address = _bootstrap(settings, Needs(describe=tuple(default_topics(settings))))
    for name, parts in sorted(topic_partitions(settings, address).items()):
        typer.echo(f"{name}  partitions={parts}")


@app.command("produce")
def produce(
    files: Annotated[
        list[str],
        typer.Argument(
            help="KumoMTA logs, one record per line (plain, gzip or zstd): files, folders, "
            "globs; '-' = stdin."
        ),
    ],
    topic: Annotated[
        str | None, typer.Option("--topic", "-t", help="Target topic (default: input topic).")
    ] = None,
    rate: Annotated[
        float | None, typer.Option(min=0.001, help="Limit to N records per second.")
    ] = None,
    key_field: Annotated[
        str,
        typer.Option(help="Record field used as message key; '' sends no keys."),
    ] = "id",
    bootstrap: BootstrapOpt = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bar (default: when a TTY)."),
    ] = None,
) -> None:
    """Replay KumoMTA log files into Kafka (each line one message, keyed by its record's id)."""
    from streamer.kafka.probe import Needs
    from streamer.kafka.produce import ProduceError, produce_file

    settings = _settings(bootstrap=bootstrap)
    address = _bootstrap(settings, Needs(write=(topic or settings.input_topic,)))
    try:
        result = produce_file(
            settings,
            address,
            files,
            topic=topic,
            rate=rate,
            key_field=key_field or None,
            progress=sys.stderr.isatty() if progress is None else progress,
        )
    except ProduceError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    typer.echo(result.summary())
    if result.failed:
        raise typer.Exit(1)
