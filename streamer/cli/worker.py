"""``streamer worker``: run the stream worker (flags override the config file and environment).

Its flags are generated from the settings they set (``streamer.config.Settings``): each flag's
type and help text are its setting's, so the flags, the configuration reference and ``--help``
say the same thing."""

from __future__ import annotations

import inspect
import os
import types
import typing
from typing import Annotated, Any, Literal

import typer

from streamer.cli import app, config_error, kafka_error, rules_error
from streamer.config import ConfigError, Settings, load_settings

#: The settings ``streamer worker`` takes as flags, in ``--help`` order, with their spellings
#: where typer's default (``input_topic`` -> ``--input-topic``) is not the one: short forms,
#: the rule files' ``--rules``, on/off pairs. Secrets are never flags (they would show in ps).
WORKER_FLAGS: dict[str, tuple[str, ...]] = {
    "bootstrap": ("--bootstrap", "-b"),
    "input_topic": (),
    "output_topic": (),
    "dlq_topic": (),
    "group_id": (),
    "non_classifiable": (),
    "files": ("--rules", "-r", "--files", "-f"),
    "back_pressure": (),
    "batch_size": (),
    "cache_size": (),
    "uncategorized_cache_size": (),
    "watch_rules": ("--watch-rules/--no-watch-rules",),
    "exactly_once": ("--exactly-once/--at-least-once",),
    "analytics": ("--analytics/--no-analytics",),
    "worker_id": (),
    "processes": (),
    "metrics_host": (),
    "metrics_port": (),
    "web_host": (),
    "web_port": (),
    "log_level": (),
    "log_format": (),
    "state_dir": (),
}


def _flag_type(annotation: Any) -> Any:
    """What the command line parses a setting as: its own type, or text where the setting is a
    choice of words (``log_format``; ``processes``' ``auto``), which the settings validate."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is Literal or any(typing.get_origin(a) is Literal for a in args):
        return str
    if origin in (typing.Union, types.UnionType):
        return args[0]
    return annotation


def _flag_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per flag, as typer reads them from a signature."""
    params = []
    for name, spellings in WORKER_FLAGS.items():
        field = Settings.model_fields[name]
        option = typer.Option(*spellings, help=field.description)
        kind = _flag_type(field.annotation)
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    return params


def worker_command(**flags: Any) -> None:
    """Classify the input topic in the consumer group until SIGTERM (then drain, commit, exit)."""
    flags["files"] = flags.get("files") or None  # no --rules: the configured or shipped ones
    try:
        settings = load_settings(**flags)
    except ConfigError as exc:
        raise config_error(exc) from None
    classifiers = _load_rules(settings)
    if settings.worker_processes > 1:
        del classifiers  # the rules are valid; the children load their own
        raise typer.Exit(_supervise(settings, flags))
    raise typer.Exit(_run_one(settings, classifiers))


worker_command.__signature__ = inspect.Signature(_flag_parameters())  # type: ignore[attr-defined]
app.command("worker")(worker_command)


def _load_rules(settings: Settings) -> Any:
    """The worker's rules, loaded and checked (with the category and provider tables) before
    any Kafka client starts: a bad file is a one-line error and exit 2."""
    # Imported here: Faust and the classifier are heavy, other commands should not pay for them.
    from streamer.classifier import ReloadableClassifier
    from streamer.logs import setup_logging
    from streamer.rules import RulesError
    from streamer.worker import default_worker_id

    if settings.worker_id is None:
        settings.worker_id = default_worker_id()
    setup_logging(settings.worker_id, settings.log_level, settings.log_format)
    native_record_path()
    try:
        classifiers = ReloadableClassifier(
            settings.rule_files,
            cache_size=settings.cache_size,
            uncategorized_cache_size=settings.uncategorized_cache_size,
        )
    except RulesError as exc:
        raise rules_error(exc) from None
    import logging

    from streamer.rules import label_warnings

    for warning in label_warnings(classifiers.current.ruleset):
        logging.getLogger("streamer.rules").warning("%s", warning)
    if settings.analytics:  # a bad category or provider file: before any Kafka client starts
        from streamer.analytics import tables_from_settings
        from streamer.analytics.tables import TableError

        try:
            tables_from_settings(settings)
        except TableError as exc:
            raise config_error(exc) from None
    return classifiers


def _run_one(settings: Settings, classifiers: Any) -> int:
    """One worker process in this process: the run loop until it is asked to stop."""
    from streamer import allocator

    allocator.tune()  # before librdkafka's threads start (streamer.allocator)
    from streamer.kafka.probe import KafkaProblem
    from streamer.worker import default_worker_id, run_worker
    from streamer.worker.supervisor import follow_supervisor

    follow_supervisor()
    # Several workers on one host: a busy web port is replaced by a free one (logged; the
    # metrics endpoint does the same in Metrics.serve), and Faust folders of exited workers go.
    from streamer import statedir
    from streamer.ports import pick_web_port

    try:
        settings.web_port = pick_web_port(settings.web_host, settings.web_port)
    except OSError as exc:  # e.g. a web_host that is no address of this machine
        raise config_error(
            ConfigError(f"web_host/web_port: cannot listen on {settings.web_host}: {exc}")
        ) from None
    worker_id = settings.worker_id or default_worker_id()  # _load_rules has named it
    statedir.remove_stale(settings.state_dir, keep=worker_id)
    statedir.claim(settings.state_dir, worker_id)
    try:
        bootstrap_addr = _bootstrap(settings)
    except KafkaProblem as exc:  # each kind its exit status: only 75 asks for a restart
        raise kafka_error(exc) from None
    from streamer.kafka.admin import TopicError

    try:
        return run_worker(settings, bootstrap_addr, classifiers)
    except TopicError as exc:  # e.g. topics this principal may not see
        typer.secho(f"kafka: {' '.join(str(exc).split())}", fg=typer.colors.RED, err=True)
        return 1


def _bootstrap(settings: Any) -> str:
    """The configured Kafka, checked to answer and to allow the worker's topics and group;
    without one, the embedded local broker.

    The local broker is a development tool (``streamer.devkit``): imported only when it is used,
    so a worker pointed at a real cluster never loads it.
    """
    if settings.bootstrap:
        from streamer.kafka.probe import check_bootstrap, worker_needs

        check_bootstrap(settings, settings.bootstrap, needs=worker_needs(settings))
        return str(settings.bootstrap)
    from streamer.devkit.broker import ensure_broker

    return ensure_broker(settings)


def _supervise(settings: Any, flags: dict[str, Any]) -> int:
    """``--processes N``: run N supervised children (``streamer.worker.supervisor``)."""
    import logging

    from streamer.kafka.probe import KafkaProblem
    from streamer.logs import log_event
    from streamer.ports import pick_port
    from streamer.worker.supervisor import Child, Supervisor, child_environment
    from streamer.worker.supervisor_http import SupervisorMetrics, serve_status

    try:
        bootstrap = _bootstrap(settings)  # once, for every child
    except KafkaProblem as exc:
        return kafka_error(exc).exit_code
    try:
        metrics_port = pick_port(settings.metrics_host, settings.metrics_port, "metrics_port")
        web_port = pick_port(settings.web_host, settings.web_port, "web_port")
    except OSError as exc:
        typer.secho(f"worker: {exc}", fg=typer.colors.RED, err=True)
        return 1

    def environment(child: Child) -> dict[str, str]:
        return child_environment(
            os.environ,
            flags,
            {
                "bootstrap": bootstrap,
                "processes": 1,
                "worker_id": child.worker_id,
                "metrics_port": child.metrics_port,
                "web_port": child.web_port,
            },
        )

    supervisor = Supervisor(
        settings.worker_processes,
        settings.worker_id,
        environment,
        metrics_host=settings.metrics_host if settings.metrics_port else None,
        web_host=settings.web_host if settings.web_port else None,
    )
    supervisor.install_signal_handlers()
    metrics = SupervisorMetrics(supervisor, settings.metrics_host)
    supervisor.on_restart = lambda child: metrics.restarts.labels(str(child.index)).inc()
    served_metrics = metrics.serve(settings.metrics_host, metrics_port)
    served_web = web_port if serve_status(supervisor, settings.web_host, web_port) else 0
    log_event(
        logging.getLogger("streamer.supervisor"),
        logging.INFO,
        "supervisor serving",
        metrics=f"http://{settings.metrics_host}:{served_metrics}/metrics"
        if served_metrics
        else "off",
        status=f"http://{settings.web_host}:{served_web}/status" if served_web else "off",
    )
    return supervisor.run()


def native_record_path() -> None:
    """A WARNING when the native record path is not built (every record then takes the Python
    path); a configuration error when ``STREAMER_REQUIRE_NATIVE=1`` asks for it."""
    import logging

    from streamer import native

    try:
        native.check_required()
    except native.NativeMissing as exc:
        raise config_error(exc) from None
    if not native.AVAILABLE:
        logging.getLogger("streamer.native").warning("%s", native.MISSING)
