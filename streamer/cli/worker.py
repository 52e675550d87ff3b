"""``streamer worker``: run the stream worker (flags override the config file and environment)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from streamer.cli import app, config_error, kafka_error, rules_error
from streamer.config import ConfigError, load_settings


@app.command("worker")
def worker_command(
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", "-b", help="Kafka bootstrap servers.")
    ] = None,
    input_topic: Annotated[str | None, typer.Option(help="Topic to classify.")] = None,
    output_topic: Annotated[str | None, typer.Option(help="Topic for enriched records.")] = None,
    dlq_topic: Annotated[str | None, typer.Option(help="Dead-letter topic.")] = None,
    group_id: Annotated[str | None, typer.Option(help="Kafka consumer group.")] = None,
    non_classifiable: Annotated[
        str | None, typer.Option(help="Other record types: pass, drop or topic:NAME.")
    ] = None,
    files: Annotated[
        list[Path] | None,
        typer.Option("--rules", "-r", "--files", "-f", help="Rule file (repeat, in load order)."),
    ] = None,
    back_pressure: Annotated[
        int | None, typer.Option(help="Pause fetching at this many in-flight records.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Records per consume batch.")] = None,
    cache_size: Annotated[
        int | None, typer.Option(help="Classified response lines remembered (LRU); 0: none.")
    ] = None,
    uncategorized_cache_size: Annotated[
        int | None, typer.Option(help="Unclassified response lines remembered (LRU); 0: none.")
    ] = None,
    watch_rules: Annotated[
        bool | None, typer.Option("--watch-rules/--no-watch-rules", help="Reload on change.")
    ] = None,
    exactly_once: Annotated[
        bool | None,
        typer.Option("--exactly-once/--at-least-once", help="Kafka transactions (see README)."),
    ] = None,
    analytics: Annotated[
        bool | None,
        typer.Option("--analytics/--no-analytics", help="Stats, suppressions and rule-gap topics."),
    ] = None,
    worker_id: Annotated[str | None, typer.Option(help="Name in logs (default host-pid).")] = None,
    processes: Annotated[
        str | None,
        typer.Option(help="Worker processes to run, supervised (a number or auto: per core)."),
    ] = None,
    metrics_host: Annotated[
        str | None, typer.Option(help="Address the Prometheus endpoint listens on.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus endpoint port; 0 disables.")
    ] = None,
    web_host: Annotated[
        str | None, typer.Option(help="Address the web views (/status, /stats) listen on.")
    ] = None,
    web_port: Annotated[
        int | None, typer.Option(help="Faust web (/status) port; 0 disables.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    ] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json.")] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="Local state: the local broker, Faust folders.")
    ] = None,
) -> None:
    """Classify the input topic in the consumer group until SIGTERM (then drain, commit, exit)."""
    flags: dict[str, Any] = {
        "bootstrap": bootstrap,
        "input_topic": input_topic,
        "output_topic": output_topic,
        "dlq_topic": dlq_topic,
        "group_id": group_id,
        "non_classifiable": non_classifiable,
        "files": files or None,
        "back_pressure": back_pressure,
        "batch_size": batch_size,
        "cache_size": cache_size,
        "uncategorized_cache_size": uncategorized_cache_size,
        "watch_rules": watch_rules,
        "exactly_once": exactly_once,
        "analytics": analytics,
        "worker_id": worker_id,
        "processes": processes,
        "metrics_host": metrics_host,
        "metrics_port": metrics_port,
        "web_host": web_host,
        "web_port": web_port,
        "log_level": log_level,
        "log_format": log_format,
        "state_dir": state_dir,
    }
    try:
        settings = load_settings(**flags)
    except ConfigError as exc:
        raise config_error(exc) from None

    # Imported here: Faust and the classifier are heavy, other commands should not pay for them.
    from streamer.classifier import ReloadableClassifier
    from streamer.kafka.probe import KafkaProblem
    from streamer.logs import setup_logging
    from streamer.rules import RulesError
    from streamer.worker import default_worker_id, run_worker

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
    if settings.worker_processes > 1:
        del classifiers  # the rules are valid; the children load their own
        raise typer.Exit(_supervise(settings, flags))
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
    statedir.remove_stale(settings.state_dir, keep=settings.worker_id)
    statedir.claim(settings.state_dir, settings.worker_id)
    try:
        bootstrap_addr = _bootstrap(settings)
    except KafkaProblem as exc:  # each kind its exit status: only 75 asks for a restart
        raise kafka_error(exc) from None
    from streamer.kafka.admin import TopicError

    try:
        code = run_worker(settings, bootstrap_addr, classifiers)
    except TopicError as exc:  # e.g. topics this principal may not see
        typer.secho(f"kafka: {' '.join(str(exc).split())}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


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
