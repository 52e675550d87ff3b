"""The stream worker's parts wired together: fetch → process → produce → acknowledge → commit.

``StreamWorker`` owns the Kafka clients and the worker's parts and runs three loops on the event
loop, started by the run loop (``streamer.worker.runloop``):

- ``fetch_loop``: ``Source.fetch`` (a batch per call, in the fetch thread), offsets registered
  with the tracker (``make_batch``), the batch handed on through ``handoff`` (the Faust channel),
  back-pressure checked (``FlowControl``);
- ``process``: called by the agent once per batch (``BatchProcessor`` under the ``Checkpoint``);
- ``poll_loop``: serves delivery acknowledgements every few milliseconds while outputs are in
  flight;

and ``housekeeping`` on a timer: the periodic commit, gauges, consumer lag, cache statistics,
and a rules reload when a file changed. Rebalances are handled by ``PartitionLifecycle``, an
aborted exactly-once transaction by the ``Rewinder``. Nothing here imports Faust: a fatal error
calls ``on_stop``, which the run loop points at a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from confluent_kafka import KafkaException

from streamer.analytics.analyzer import Analyzer, windows_from_settings
from streamer.classifier import ReloadableClassifier
from streamer.config import Settings
from streamer.kafka.admin import TopicError, create_topics, default_topics, wait_for_topics
from streamer.kafka.sink import NOT_AUTHORIZED, Sink
from streamer.kafka.source import TP, Source
from streamer.logs import log_event
from streamer.memory import kafka_client_config
from streamer.metrics import Metrics
from streamer.native import describe as describe_record_path
from streamer.pipeline import Pipeline
from streamer.worker.assignment import DRAIN_TIMEOUT_S, PartitionLifecycle
from streamer.worker.checkpoint import Checkpoint, ExactlyOnce, make_checkpoint
from streamer.worker.exits import NOT_AUTHORIZED_EXIT, TEMPFAIL_EXIT
from streamer.worker.flow import FlowControl
from streamer.worker.keyed_stage import KeyedStage
from streamer.worker.offsets import OffsetTracker, RewindError
from streamer.worker.processing import Batch, BatchProcessor, make_batch
from streamer.worker.reload import RulesReloader
from streamer.worker.rewind import Rewinder
from streamer.worker.rollup import RollupStage
from streamer.worker.stats import StatsPublisher, flush_due
from streamer.worker.suppressor import SuppressionStage

log = logging.getLogger("streamer.worker")
Stage = TypeVar("Stage", bound=KeyedStage)

#: Longest wait for a record while records flow / when the last fetch was empty. A fetch returns
#: as soon as a record is there (`Source.fetch`), so these only bound how long the fetch thread
#: sits in one call when nothing comes (it applies pauses, seeks and commits between calls).
FETCH_TIMEOUT_BUSY_S = 0.01
FETCH_TIMEOUT_IDLE_S = 0.05
LAG_INTERVAL_S = 2.0
#: How often the poller serves delivery reports while outputs are in flight.
POLL_INTERVAL_S = 0.004
#: By when (from SIGTERM) the keyed stages must have stopped: well inside Kubernetes' default
#: 30 s grace period; a stage still blocked then is left behind (``KeyedStage.join``).
STOP_S = 25.0
#: What the stages get at least, however long the record path's drain took (to leave the group).
STAGE_STOP_MIN_S = 2.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class StreamWorker:
    """Everything one ``streamer worker`` process runs, apart from the Faust app around it."""

    def __init__(
        self, settings: Settings, bootstrap: str, *, classifiers: ReloadableClassifier
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.worker_id = settings.worker_id or default_worker_id()
        self.classifiers = classifiers
        self.metrics = Metrics(
            max_values=settings.metrics_max_values, top_keys=settings.metrics_top_keys
        )
        self.tracker = OffsetTracker()
        self.flow = FlowControl(self.tracker, settings.back_pressure, self.metrics)
        self.reloader = RulesReloader(classifiers, self.metrics, watch=settings.watch_rules)
        self.pipeline = Pipeline(
            classifiers,
            output_topic=settings.output_topic,
            dlq_topic=settings.dlq_topic or "",
            non_classifiable=settings.non_classifiable,
            max_message_bytes=settings.max_message_bytes,
            analyzer=Analyzer.from_settings(settings) if settings.analytics else None,
            suppression_events_topic=settings.suppression_events_topic or "",
        )
        self.stats: StatsPublisher | None = None  # analytics on: set by start_clients()
        self._last_stats_flush = 0.0
        self.fetch_size = max(1, min(settings.batch_size, settings.back_pressure))
        # Set by start_clients(), on the event loop.
        self.source: Source | None = None
        self.sink: Sink | None = None
        self.checkpoint: Checkpoint | None = None
        self.suppressor: SuppressionStage | None = None  # analytics on: the keyed stages
        self.rollup: RollupStage | None = None
        self.processor: BatchProcessor | None = None
        #: What the run loop does to stop the worker gracefully (drain, commit, exit).
        self.on_stop: Callable[[], None] = lambda: None
        self.metrics_port = 0
        self.exit_code = 0
        self._stopping = False
        self._draining = False
        self._fetch_done = asyncio.Event()
        self._produced = asyncio.Event()
        self._last_lag = 0.0
        self._background: set[asyncio.Future[Any]] = set()  # keeps fire-and-forget tasks alive

    # --- start-up ------------------------------------------------------------------------------
    def start_clients(self) -> None:
        s = self.settings
        eos = s.exactly_once
        out_conf, in_conf = _queue_limits(s)
        self.sink = sink = Sink(
            s,
            self.bootstrap,
            client_id=f"{self.worker_id}-out",
            dlq_topic=s.dlq_topic or "",
            on_retry=lambda action: self.metrics.produce_retries.labels(action).inc(),
            transactional_id=f"streamer-{s.group_id}-{self.worker_id}" if eos else None,
            on_delivered=self.metrics.stage_seconds["deliver"].observe,
            **out_conf,
        )
        self.source = Source(
            s,
            self.bootstrap,
            client_id=f"{self.worker_id}-in",
            loop=asyncio.get_running_loop(),
            group_metadata=eos,
            **in_conf,
        )
        self.checkpoint = make_checkpoint(
            eos, self.tracker, self.source, self.metrics, sink.producer, sink.transaction_timeout
        )
        analyzer = self.pipeline.analyzer  # None: analytics off
        self.stats = _stats_publisher(s, sink, self.worker_id, analyzer, self.metrics)
        _rewind_aborted(self)
        # at-least-once: held chunks are released by a stats flush (exactly-once: per batch)
        publish = self.stats.flush if self.stats is not None and not eos else None
        self.source.handler = PartitionLifecycle(
            self.checkpoint, self.sink, self.flow, self.metrics, publish
        )
        self.processor = BatchProcessor(self.pipeline, self.sink, self.metrics, self.stats)
        self.flow.source = self.source
        if analyzer is not None:
            events = s.suppression_events_topic or ""
            self.pipeline.events_partitions = _partitions(sink.producer, events)
            self.suppressor = _keyed_stage(self, SuppressionStage)
            self.rollup = _keyed_stage(self, RollupStage)
        self.source.subscribe()

    # --- the loops -----------------------------------------------------------------------------
    async def fetch_loop(
        self,
        handoff: Callable[[Batch], Awaitable[None]],
        started: Callable[[], None] = lambda: None,
    ) -> None:
        """Start the clients, then fetch batches and hand them on until stopping.

        ``started`` runs once the clients are up. A failure stops the worker (exit code 1).
        """
        try:
            self.start_clients()
            started()
            assert self.source is not None
            source = self.source
            timeout = FETCH_TIMEOUT_IDLE_S
            while not self._stopping:
                await self.flow.wait_for_room()
                messages = await source.fetch(self.fetch_size, timeout)
                if not messages:
                    timeout = FETCH_TIMEOUT_IDLE_S
                    continue
                timeout = FETCH_TIMEOUT_BUSY_S
                batch = make_batch(self.tracker, _without_errors(messages))
                if batch is not None:
                    await handoff(batch)
                self.flow.after_fetch()
        except RewindError as exc:  # where reading resumed is unknown: restart from the commit
            log_event(log, logging.WARNING, "rewind failed; stopping", error=str(exc))
            if self.checkpoint is not None:  # a batch tracked in part: nothing of it may wait
                self.metrics.abandoned.inc(self.checkpoint.fail())
            self.stop(TEMPFAIL_EXIT)
        except Exception:
            log.exception("fetch loop failed")
            # without fetching the worker is useless: stop (drain, commit, exit 1) so that its
            # partitions move and a supervisor restarts it
            self.stop(1)
        finally:
            self._fetch_done.set()

    async def process(self, batch: Batch) -> None:
        """The agent's work for one batch."""
        assert self.processor is not None and self.checkpoint is not None
        await self.processor.process(batch, self.checkpoint)
        self._produced.set()
        await self._flush_stats_when_due(time.monotonic())  # a few reads when not due
        if self.checkpoint.failed and not self._stopping:
            self.metrics.abandoned.inc(self.checkpoint.fail())
            self.stop(failure_exit(self.checkpoint, self.sink))
        self.flow.maybe_resume()

    async def poll_loop(self) -> None:
        """Serve delivery reports promptly while anything is in flight (ack latency)."""
        while True:
            sink = self.sink
            if sink is None or sink.queued == 0:
                self._produced.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._produced.wait(), 0.1)
                if sink is not None:
                    sink.poll(0)  # errors and statistics even when idle
                continue
            sink.poll(0)
            self.flow.maybe_resume()
            await asyncio.sleep(POLL_INTERVAL_S)

    async def housekeeping(self) -> None:
        """The timer: commit, refresh gauges, lag and cache statistics, watch the rules."""
        sink, source, checkpoint = self.sink, self.source, self.checkpoint
        if sink is None or source is None or checkpoint is None:
            return
        sink.poll(0)
        if sink.fatal is not None and not self._draining:
            self.stop(failure_exit(self.checkpoint, self.sink))
        if not self._draining:
            checkpoint.commit_due()
        self.flow.maybe_resume()
        m = self.metrics
        m.in_flight.set(self.tracker.unsettled)
        m.awaiting_stats.set(self.tracker.settled)
        m.assigned_partitions.set(len(source.assignment))
        if source.want_paused:
            m.paused_partitions.set(len(source.paused))
        now = time.monotonic()
        await self._flush_stats_when_due(now)
        m.top_sites.refresh()
        m.deliverability.rule_gaps.refresh()  # after the flush: it counts the gaps it folded
        if now - self._last_lag >= LAG_INTERVAL_S:
            self._last_lag = now
            m.set_lag(source.lags)
            source.request_lag()
            reset, self.reloader.replaced = self.reloader.replaced, False
            m.update_cache_stats(self.classifiers.current.cache_stats(), reset=reset)
        if self.reloader.changed():
            await self.reloader.reload("file changed")

    async def _flush_stats_when_due(self, now: float) -> None:
        """At-least-once: publish the stats update (releasing held chunks) every interval, or
        sooner while many settled records or tally keys wait for it (``flush_due``)."""
        stats = self.stats
        s = self.settings
        if stats is None or s.exactly_once or self._draining:
            return
        since = now - self._last_stats_flush
        settled, keys = self.tracker.settled, stats.aggregator.pending_keys
        if flush_due(since, s.stats_flush_interval, settled, s.back_pressure, keys):
            self._last_stats_flush = now
            await stats.flush()

    def in_background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` fire-and-forget, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def stopping(self) -> bool:
        return self._stopping

    # --- stopping ------------------------------------------------------------------------------
    def stop(self, exit_code: int = 0) -> None:
        """Stop the worker through the run loop (which calls ``drain_and_close``)."""
        self.exit_code = self.exit_code or exit_code
        self._stopping = True
        self.on_stop()

    async def drain_and_close(self) -> None:
        """Stop fetching, finish in-flight records, commit, leave the group."""
        if self._draining:
            return
        self._draining = self._stopping = self.flow.stopping = True
        t0 = time.monotonic()
        log_event(log, logging.INFO, "stopping: draining", in_flight=self.tracker.in_flight)
        try:
            await asyncio.wait_for(self._fetch_done.wait(), 5.0)
        except TimeoutError:
            log_event(log, logging.WARNING, "fetch task did not stop in time")
        source, sink, checkpoint = self.source, self.sink, self.checkpoint
        if source is None or sink is None or checkpoint is None:
            return
        if self.stats is not None and not checkpoint.exactly_once:
            await self.stats.flush()  # releases the held chunks
        await _finish_in_flight(self.tracker, checkpoint, sink, t0 + DRAIN_TIMEOUT_S)
        positions = {} if checkpoint.failed else checkpoint.positions_to_commit()
        ok = await source.run_in_fetch_thread(source.commit_sync, positions)
        if ok and positions:
            checkpoint.on_committed(positions)
        left = self.tracker.in_flight
        await source.close()  # leaves the group; revoke callbacks run (nothing left to commit)
        undelivered = sink.close(5.0)
        await _stop_stages(self, t0 + STOP_S)
        log_event(
            log,
            logging.INFO if not left else logging.WARNING,
            "stopped",
            consumed=int(self.metrics.total(self.metrics.events_in)),
            committed=_fmt_positions(positions),
            uncommitted_records=left,
            undelivered=undelivered,
            seconds=round(time.monotonic() - t0, 3),
        )


async def _finish_in_flight(
    tracker: OffsetTracker, checkpoint: Checkpoint, sink: Sink, deadline: float
) -> None:
    """Serve acknowledgements until nothing is in flight and no transaction is open (leaving
    the group first would fail it), or until the deadline. A fatal producer (e.g. no ACL to
    write) acknowledges nothing more: no use waiting for it."""
    while (
        (tracker.in_flight or checkpoint.busy)
        and time.monotonic() < deadline
        and sink.fatal is None
    ):
        sink.poll(0)
        await asyncio.sleep(0.005)


def _queue_limits(s: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """librdkafka's bounds of the records' producer and consumer: their parts of
    ``memory_budget_mb`` (``streamer.memory.KAFKA_CLIENTS``)."""
    out = kafka_client_config(s.memory_budget_mb, "records_producer")
    # room for two outputs of an input at the size limit, whatever the budget
    largest_kb = 2 * (s.max_message_bytes + 65_536) // 1024
    out["queue.buffering.max.kbytes"] = max(out["queue.buffering.max.kbytes"], largest_kb)
    return out, kafka_client_config(s.memory_budget_mb, "records_consumer")


def _rewind_aborted(stream: StreamWorker) -> None:
    """Exactly-once: an aborted transaction's records are read again (``Rewinder``)."""
    if isinstance(stream.checkpoint, ExactlyOnce) and stream.source is not None:
        rewinder = Rewinder(stream.tracker, stream.source, stream.metrics, stream.stats)
        stream.checkpoint.on_aborted = rewinder.rewind


async def _stop_stages(stream: StreamWorker, deadline: float) -> None:
    """Stop the keyed stages, after the inputs of the records the worker finished: both at
    once, by one deadline (a stage restoring after a rebalance, or waiting for a broker, must
    not hold the stop past the orchestrator's grace period; blocking calls: off the loop)."""
    stages = [s for s in (stream.suppressor, stream.rollup) if s is not None]
    deadline = max(deadline, time.monotonic() + STAGE_STOP_MIN_S)
    for stage in stages:
        stage.request_stop(deadline)
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(None, stage.join) for stage in stages))


def _keyed_stage(stream: StreamWorker, kind: Callable[..., Stage]) -> Stage:
    """One of the worker's keyed stages, started; its failure stops the worker (exit 1)."""
    loop = asyncio.get_running_loop()
    stage = kind(
        stream.settings,
        stream.bootstrap,
        worker_id=stream.worker_id,
        on_failure=lambda: loop.call_soon_threadsafe(stream.stop, 1),
        metrics=stream.metrics,
    )
    stage.worker_stopping = lambda: stream.stopping
    stage.start()
    return stage


def _stats_publisher(
    s: Settings, sink: Sink, worker_id: str, analyzer: Analyzer | None, metrics: Metrics
) -> StatsPublisher | None:
    """Analytics on: the publisher of the worker's windowed stats. Exactly-once: what it folds
    reaches the deliverability metrics once its transaction committed."""
    if analyzer is None:
        return None
    return StatsPublisher(
        windows_from_settings(s),
        sink,
        s.stats_partials_topic or "",
        worker_id,
        analyzer.aggregator,
        metrics.deliverability.record,
        defer_metrics=s.exactly_once,
    )


def _partitions(producer: Any, topic: str, timeout: float = 10.0) -> int:
    """The suppression events topic's partitions, which the pipeline places a batch's
    deliveries for; 0 when unknown (it then sends an event per delivery, as before batches)."""
    try:
        meta = producer.list_topics(topic, timeout=timeout).topics.get(topic)
    except KafkaException as exc:
        meta, error = None, str(exc)
    else:
        error = str(meta.error) if meta is not None and meta.error is not None else "missing"
    if meta is None or meta.error is not None or not meta.partitions:
        log_event(log, logging.WARNING, "events topic unknown: an event per delivery", error=error)
        return 0
    return len(meta.partitions)


def prepare(stream: StreamWorker) -> None:
    """Checks and set-up that need no event loop: topics and the metrics endpoint."""
    s = stream.settings
    try:
        create_topics(s, stream.bootstrap, default_topics(s))
    except TopicError as exc:
        # No right to create topics? Then they must exist already.
        log_event(log, logging.WARNING, "could not create topics", error=str(exc))
        wait_for_topics(s, stream.bootstrap, default_topics(s), 10.0)
    stream.metrics_port = stream.metrics.serve(s.metrics_host, s.metrics_port)
    stream.metrics.set_rules_version(stream.classifiers.current.version)
    stream.metrics.native_path.set(1 if stream.pipeline.use_native else 0)
    log_event(
        log,
        logging.INFO,
        "worker starting",
        group=s.group_id,
        input=s.input_topic,
        output=s.output_topic,
        dlq=s.dlq_topic,
        rules_version=stream.classifiers.current.version,
        metrics_port=stream.metrics_port,
        web_port=s.web_port,
        exactly_once=s.exactly_once,
        analytics=_analytics_mode(stream),
        record_path=describe_record_path(stream.pipeline.use_native),
    )


def _analytics_mode(stream: StreamWorker) -> str:
    """``off`` or ``on`` (counted on the record path that runs: ``record_path``)."""
    return "off" if stream.pipeline.analyzer is None else "on"


def _without_errors(messages: list[Any]) -> list[Any]:
    if all(m.error() is None for m in messages):
        return messages
    for m in messages:
        if m.error() is not None:
            log_event(log, logging.WARNING, "consume error", error=str(m.error()))
    return [m for m in messages if m.error() is None]


def worker_status(stream: StreamWorker) -> dict[str, Any]:
    """What ``/status`` reports: identity, assignment, progress and the rules in force."""
    source, m = stream.source, stream.metrics
    committed = stream.checkpoint.committed if stream.checkpoint else {}
    return {
        "worker_id": stream.worker_id,
        "group": stream.settings.group_id,
        "input_topic": stream.settings.input_topic,
        "exactly_once": stream.settings.exactly_once,
        "assigned": sorted(f"{t}:{p}" for t, p in (source.assignment if source else ())),
        "paused": sorted(f"{t}:{p}" for t, p in (source.paused if source else ())),
        "in_flight": stream.tracker.unsettled,
        "awaiting_stats": stream.tracker.settled,
        "in_flight_peak": stream.flow.peak,
        "consumed": int(m.total(m.events_in)),
        "batches": int(m.total(m.batches)),
        "produced": stream.sink.produced if stream.sink is not None else 0,
        "pauses": int(m.total(m.backpressure_pauses)),
        "abandoned": int(m.total(m.abandoned)),
        "rewinds": int(m.total(m.rewinds)),
        "committed": {f"{t}:{p}": o for (t, p), o in sorted(committed.items())},
        "rules_version": stream.classifiers.current.version,
        "record_path": describe_record_path(stream.pipeline.use_native),
        "reloads": int(m.total(m.rules_reloads)),
        "reload_failures": int(m.total(m.rules_reload_failures)),
        "stopping": stream.stopping,
        "suppressions": stream.suppressor.status() if stream.suppressor is not None else None,
        "stats_rollup": stream.rollup.status() if stream.rollup is not None else None,
    }


def _fmt_positions(positions: dict[TP, int]) -> str:
    """``topic:partition@offset,...``, or "none" (a log field never reads as empty)."""
    return ",".join(f"{t}:{p}@{o}" for (t, p), o in sorted(positions.items())) or "none"


def failure_exit(checkpoint: Checkpoint | None, sink: Sink | None) -> int:
    """The exit status of a worker that cannot go on: 75 when a restart is all it takes,
    77 when the broker refused its writes for want of an ACL (no restart cures that), else 1."""
    if checkpoint is not None and checkpoint.overtaken:
        return TEMPFAIL_EXIT
    refused = sink.fatal if sink is not None else None
    if (checkpoint is not None and checkpoint.denied) or (
        refused is not None and refused.code() in NOT_AUTHORIZED
    ):
        return NOT_AUTHORIZED_EXIT
    return 1
