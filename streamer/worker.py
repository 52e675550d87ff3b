"""``streamer worker``: a Faust app whose agent classifies batches read by confluent-kafka.

Faust's per-event Stream machinery costs ~100 µs per record, so Faust never touches individual
records here: Kafka I/O goes through confluent-kafka (``streamer.kafka.source``/``sink``) and
Faust runs the application around it, paying its cost once per *batch*:

- a fetch task (``app.task``) calls ``consume(batch_size)`` in a dedicated thread, registers the
  batch's offsets with the tracker (``streamer.kafka.offsets``) and sends the batch, as one Python
  object, to an in-memory Faust channel (no serialisation, no copy);
- the ``classify`` agent reads batches from the channel, runs ``Pipeline.process`` (decode,
  classify, enrich, route) and hands the outputs to the producer with delivery callbacks;
- a producer poller serves acknowledgements every few milliseconds while anything is in flight;
- a Faust timer commits the acknowledged offset prefix, refreshes gauges and consumer lag, and
  reloads the rules when a rules file changed; SIGHUP reloads them too;
- a Faust web view ``/status`` reports the worker's state (when ``web_port`` is not 0).

Faust runs without Kafka clients of its own (``_AppBoot``): no Faust consumer group to rebalance
when workers come and go, no leader topic; our consumer group is the only one. The consumer is
only ever called from the fetch thread (see ``streamer.kafka.source``). After start-up the
garbage collector's long-lived objects are frozen (``_settle_gc``).

Guarantees: at-least-once (an offset is committed only once every output of it and of every
earlier offset of its partition was acknowledged with acks=all); back-pressure by pausing the
assigned partitions when ``back_pressure`` records are in flight; graceful SIGTERM (stop
fetching, finish in-flight records, commit, leave the group, exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import KafkaException, Message, TopicPartition
from faust.app.base import BootStrategy
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streamer.config import Settings
from streamer.kafka.admin import TopicError, create_topics, default_topics, wait_for_topics
from streamer.kafka.offsets import Chunk, OffsetTracker
from streamer.kafka.sink import Sink
from streamer.kafka.source import TP, RebalanceHandler, Source
from streamer.logs import log_event
from streamer.metrics import Metrics
from streamer.pipeline import BatchStats, Pipeline

log = logging.getLogger("streamer.worker")

#: consume() timeout while records flow / when the last fetch was empty. Short, so a batch never
#: waits long to fill at moderate rates (latency), while a busy topic fills batches anyway.
FETCH_TIMEOUT_BUSY_S = 0.01
FETCH_TIMEOUT_IDLE_S = 0.05
COMMIT_INTERVAL_S = 0.5
LAG_INTERVAL_S = 2.0
RULES_CHECK_INTERVAL_S = 1.0
#: How long revoke/shutdown wait for in-flight records before giving them up (they are then
#: simply not committed, and whoever owns the partition next consumes them again).
DRAIN_TIMEOUT_S = 20.0
#: Batches queued between the fetch task and the agent.
CHANNEL_BATCHES = 4
#: Records classified before their outputs are handed to the producer (see ``_send_chunk``).
SLICE_RECORDS = 500
#: How often the poller serves delivery reports while outputs are in flight.
POLL_INTERVAL_S = 0.004
#: Young-generation GC threshold: the default (700 allocations) runs a collection every few
#: records; surviving batches then get promoted and full collections follow.
GC_GEN0_THRESHOLD = 10_000


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(slots=True)
class Batch:
    """One consume() call's records, grouped by partition, each group with its chunk."""

    groups: list[tuple[Chunk, list[Message]]]
    count: int
    consumed_at: float = field(default_factory=time.monotonic)


class BatchChannel(faust.Channel):
    """An in-memory Faust channel carrying our batches as plain values, never dropped.

    Faust wraps what ``Channel.send`` publishes in an ``Event`` and its streams silently *skip*
    events while the app's flow control is suspended or from an older consumer generation, and
    a default channel queue is cleared on resume. A batch carries tracked offsets: a skipped
    one would never be acknowledged and its partitions would stall for good. So batches go in
    as plain values (streams pass those through untouched) on one queue, shared by every
    iterator of the channel (all the agent's actors) and with a flow control that is never
    suspended; a batch put before the agent iterates simply waits in the queue.
    """

    @property
    def queue(self) -> ThrowableQueue:
        root = self._root
        if root is not None and root is not self:
            return root.queue
        if self._queue is None:
            flow = FlowControlEvent(initially_suspended=False)
            self._queue = ThrowableQueue(maxsize=self.maxsize or 0, flow_control=flow)
        return self._queue

    async def put(self, value: Any) -> None:
        await self.queue.put(value)


class _AppBoot(BootStrategy):
    """Faust runs the app without Kafka clients of its own.

    Our records never pass through Faust's consumer, and a Faust consumer group of its own
    (``<app id>``, with its leader topic) would rebalance whenever a worker joins or leaves:
    Faust then suspends its agents and streams while our confluent-kafka group is rebalancing
    too, and two workers starting together could stall each other. Without a Faust consumer
    there is no Faust group, no table recovery gating the start of tasks, and nothing to
    rebalance; agents, timers, channels and web views run as usual.
    """

    enable_kafka_consumer = False
    enable_kafka_producer = False


class _App(faust.App):
    BootStrategy = _AppBoot


def _faust_broker_url(bootstrap: str) -> str:
    # Required by Faust's configuration; Faust opens no Kafka client here (see _AppBoot).
    return ";".join(f"kafka://{h.strip()}" for h in bootstrap.split(",") if h.strip())


class StreamWorker(RebalanceHandler):
    """Everything one ``streamer worker`` process runs, wired into a Faust app."""

    def __init__(self, settings: Settings, bootstrap: str, *, classifiers: Any) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.worker_id = settings.worker_id or default_worker_id()
        self.classifiers = classifiers
        self.metrics = Metrics()
        self.tracker = OffsetTracker()
        assert settings.dlq_topic is not None
        self.pipeline = Pipeline(
            classifiers,
            output_topic=settings.output_topic,
            dlq_topic=settings.dlq_topic,
            non_classifiable=settings.non_classifiable,
            max_message_bytes=settings.max_message_bytes,
        )
        self.back_pressure = settings.back_pressure
        self.low_water = max(0, settings.back_pressure // 2)
        self.fetch_size = max(1, min(settings.batch_size, settings.back_pressure))
        self.source: Source | None = None
        self.sink: Sink | None = None
        self.metrics_port = 0
        self.exit_code = 0
        # counters for /status and logs
        self.consumed = 0
        self.batches = 0
        self.pauses = 0
        self.abandoned = 0
        self.in_flight_peak = 0
        self.reloads = 0
        self.reload_failures = 0
        self.committed: dict[TP, int] = {}
        self.eos = settings.exactly_once
        self._failed = False  # a transaction failed: stop without committing anything more
        self._stopping = False
        self._draining = False
        self._fetch_done = asyncio.Event()
        self._produced_event = asyncio.Event()
        self._rules_mtimes = self._stat_rules()
        self._last_lag = 0.0
        self._last_rules_check = 0.0
        self._cache_reset = True
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Future[Any]] = set()  # keeps fire-and-forget tasks alive
        self.app = self._build_app()

    # --- the Faust app ------------------------------------------------------------------------
    def _build_app(self) -> faust.App:
        s = self.settings
        datadir = Path(s.state_dir) / "faust" / self.worker_id
        datadir.mkdir(parents=True, exist_ok=True)
        app = _App(
            f"{s.group_id}-app",
            broker=_faust_broker_url(self.bootstrap),
            autodiscover=False,
            datadir=str(datadir),
            web_enabled=s.web_port != 0,
            web_port=s.web_port or 6066,
            web_bind=s.web_host,
            web_host=s.web_host,
        )
        self.channel: BatchChannel = BatchChannel(app, maxsize=CHANNEL_BATCHES)

        @app.agent(self.channel, name="classify", concurrency=1)
        async def classify(batches: faust.StreamT[Batch]) -> None:
            # One Faust event per batch: Faust's per-event cost is paid per ~batch_size records.
            async for batch in batches:
                await self._process(batch)

        @app.task
        async def fetch() -> None:
            await self._fetch_loop()

        @app.task
        async def poll_producer() -> None:
            await self._poll_loop()

        @app.timer(COMMIT_INTERVAL_S)
        async def housekeeping() -> None:
            await self._housekeeping()

        @app.page("/status")
        async def status(web: Any, request: Any) -> Any:
            return web.json(self.status())

        self._agent = classify
        return app

    # --- startup ----------------------------------------------------------------------------
    def prepare(self) -> None:
        """Checks and set-up that need no event loop: topics and the metrics endpoint."""
        try:
            create_topics(self.settings, self.bootstrap, default_topics(self.settings))
        except TopicError as exc:
            # No right to create topics? Then they must exist already.
            log_event(log, logging.WARNING, "could not create topics", error=str(exc))
            wait_for_topics(self.settings, self.bootstrap, default_topics(self.settings), 10.0)
        self.metrics_port = self.metrics.serve(
            self.settings.metrics_host, self.settings.metrics_port
        )
        self.metrics.set_rules_version(self.classifiers.current.version)
        log_event(
            log,
            logging.INFO,
            "worker starting",
            group=self.settings.group_id,
            input=self.settings.input_topic,
            output=self.settings.output_topic,
            dlq=self.settings.dlq_topic,
            rules_version=self.classifiers.current.version,
            metrics_port=self.metrics_port,
            web_port=self.settings.web_port,
            exactly_once=self.settings.exactly_once,
        )

    def _start_clients(self) -> None:
        loop = asyncio.get_running_loop()
        self.sink = Sink(
            self.settings,
            self.bootstrap,
            client_id=f"{self.worker_id}-out",
            dlq_topic=self.settings.dlq_topic or "",
            on_retry=lambda action: self.metrics.produce_retries.labels(action).inc(),
            transactional_id=(
                f"streamer-{self.settings.group_id}-{self.worker_id}" if self.eos else None
            ),
        )
        self.source = Source(
            self.settings,
            self.bootstrap,
            client_id=f"{self.worker_id}-in",
            handler=self,
            loop=loop,
            group_metadata=self.eos,
        )
        self.source.subscribe()

    # --- fetch task -------------------------------------------------------------------------
    async def _fetch_loop(self) -> None:
        self._start_clients()
        _settle_gc()
        assert self.source is not None
        source = self.source
        timeout = FETCH_TIMEOUT_IDLE_S
        try:
            while not self._stopping:
                messages = await source.fetch(self.fetch_size, timeout)
                if not messages:
                    timeout = FETCH_TIMEOUT_IDLE_S
                    continue
                timeout = FETCH_TIMEOUT_BUSY_S
                batch = self._make_batch(messages)
                if batch is not None:
                    await self.channel.put(batch)
                in_flight = self.tracker.in_flight
                if in_flight > self.in_flight_peak:
                    self.in_flight_peak = in_flight
                    self.metrics.in_flight_max.set(in_flight)
                if in_flight >= self.back_pressure and not source.want_paused:
                    self._pause()
        except Exception:
            log.exception("fetch loop failed")
            self.exit_code = 1
            self._stopping = True
            # without fetching the worker is useless: stop (drain, commit, exit 1) so that its
            # partitions move and a supervisor restarts it
            self._background_task(self._request_stop())
        finally:
            self._fetch_done.set()

    def _make_batch(self, messages: list[Message]) -> Batch | None:
        """Group by partition (order kept) and register each group's offsets."""
        by_tp: dict[tuple[str, int], list[Message]] = {}
        for m in messages:
            if m.error() is not None:
                log_event(log, logging.WARNING, "consume error", error=str(m.error()))
                continue
            tp = (m.topic(), m.partition())
            group = by_tp.get(tp)
            if group is None:
                by_tp[tp] = [m]
            else:
                group.append(m)
        groups: list[tuple[Chunk, list[Message]]] = []
        count = 0
        for (topic, partition), msgs in by_tp.items():
            chunk = self.tracker.track(
                topic, partition, msgs[0].offset(), msgs[-1].offset(), len(msgs)
            )
            if chunk is None:  # revoked between consume() and now: someone else reads it
                continue
            groups.append((chunk, msgs))
            count += len(msgs)
        self.consumed += count
        return Batch(groups, count) if groups else None

    # --- the agent's work ---------------------------------------------------------------------
    async def _process(self, batch: Batch) -> None:
        if self.eos:
            await self._process_transaction(batch)
            return
        sink = self.sink
        assert sink is not None
        total = BatchStats()
        for chunk, messages in batch.groups:
            if chunk.abandoned:
                continue  # revoked while queued: not committed, the next owner reprocesses it
            await self._send_chunk(chunk, messages, total)
        self.batches += 1
        sink.poll(0)
        self._produced_event.set()
        self._record(total)
        self._maybe_resume()

    def _record(self, total: BatchStats) -> None:
        """One metrics update per batch (never per event)."""
        self.metrics.record_batch(
            total.events_in,
            total.events_out,
            total.dlq,
            total.dropped,
            total.classify_seconds,
            total.sites,
        )

    async def _send_chunk(self, chunk: Chunk, messages: list[Message], total: BatchStats) -> None:
        """Process and produce a chunk slice by slice, then seal it.

        A slice's outputs go to librdkafka before the next slice is classified, so a big batch
        (a backlog after a pause) starts reaching the broker at once instead of after the whole
        batch; between slices the loop serves acknowledgements and timers.
        """
        sink = self.sink
        assert sink is not None
        n = len(messages)
        for start in range(0, n, SLICE_RECORDS):
            part = messages if n <= SLICE_RECORDS else messages[start : start + SLICE_RECORDS]
            outputs, stats = self.pipeline.process(part)
            last = start + SLICE_RECORDS >= n
            await sink.send(outputs, chunk, seal=last)
            total.merge(stats)
            if not last:
                sink.poll(0)
                await asyncio.sleep(0)

    async def _process_transaction(self, batch: Batch) -> None:
        """Exactly-once: the batch's outputs and its input offsets commit in one transaction."""
        sink, source = self.sink, self.source
        assert sink is not None and source is not None
        groups = [(c, m) for c, m in batch.groups if not c.abandoned]
        if self._failed or not groups:
            return
        producer = sink.producer
        total = BatchStats()
        positions: dict[TP, int] = {}
        try:
            producer.begin_transaction()
            for chunk, messages in groups:
                await self._send_chunk(chunk, messages, total)
                positions[chunk.topic, chunk.partition] = chunk.last + 1
            offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
            # read by the fetch thread: the consumer is never called from the loop (see source)
            producer.send_offsets_to_transaction(offsets, source.group_metadata)
            # Blocks the loop until the broker committed (outputs flushed first): one round
            # trip per batch, the price of exactly-once.
            producer.commit_transaction()
        except KafkaException as exc:
            err = exc.args[0]
            log_event(log, logging.CRITICAL, "transaction failed; stopping", error=str(err))
            with contextlib.suppress(KafkaException):
                if err.txn_requires_abort():
                    producer.abort_transaction(10.0)
            self._fail()
            return
        sink.poll(0)
        # committable() drops the chunks the transaction completed (nothing else would here)
        self.tracker.committable(list(positions))
        self.on_committed(positions)
        self.batches += 1
        self.metrics.commits.inc()
        self._record(total)
        self._maybe_resume()

    def _fail(self) -> None:
        """Give up every partition's uncommitted work and stop (exit code 1)."""
        self._failed = True
        self.exit_code = 1
        self.abandoned += sum(c.count for c in self.tracker.revoke(list(self.tracker.partitions)))
        self._background_task(self._request_stop())

    def _background_task(self, coro: Any) -> None:
        """Run ``coro`` fire-and-forget, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _poll_loop(self) -> None:
        """Serve delivery reports promptly while anything is in flight (ack latency)."""
        while True:
            sink = self.sink
            if sink is None or len(sink) == 0:
                self._produced_event.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._produced_event.wait(), 0.1)
                if sink is not None:
                    sink.poll(0)  # errors and statistics even when idle
                continue
            sink.poll(0)
            self._maybe_resume()
            await asyncio.sleep(POLL_INTERVAL_S)

    # --- back-pressure --------------------------------------------------------------------------
    def _pause(self) -> None:
        assert self.source is not None
        n = self.source.pause()
        self.pauses += 1
        self.metrics.backpressure_pauses.inc()
        self.metrics.paused_partitions.set(n + len(self.source.paused))  # applied at next fetch
        log_event(
            log,
            logging.INFO,
            "back-pressure: partitions paused",
            in_flight=self.tracker.in_flight,
            limit=self.back_pressure,
            partitions=n,
        )

    def _maybe_resume(self) -> None:
        source = self.source
        if source is None or not source.want_paused or self._stopping:
            return
        if self.tracker.in_flight <= self.low_water:
            n = source.resume()
            self.metrics.paused_partitions.set(0)
            log_event(
                log,
                logging.INFO,
                "back-pressure: partitions resumed",
                in_flight=self.tracker.in_flight,
                partitions=n,
            )

    # --- timer ---------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        sink, source = self.sink, self.source
        if sink is None or source is None:
            return
        sink.poll(0)
        if sink.fatal is not None and not self._draining:
            self.exit_code = 1
            self._background_task(self._request_stop())
        if not self._draining and not self.eos:
            self._commit_async()
        self._maybe_resume()
        m = self.metrics
        m.in_flight.set(self.tracker.in_flight)
        m.assigned_partitions.set(len(source.assignment))
        if source.want_paused:
            m.paused_partitions.set(len(source.paused))
        m.top_sites.refresh()
        now = time.monotonic()
        if now - self._last_lag >= LAG_INTERVAL_S:
            self._last_lag = now
            m.set_lag(source.lags)
            source.request_lag()
            m.update_cache_stats(self.classifiers.current.cache_stats(), reset=self._cache_reset)
            self._cache_reset = False
        if self.settings.watch_rules and now - self._last_rules_check >= RULES_CHECK_INTERVAL_S:
            self._last_rules_check = now
            mtimes = self._stat_rules()
            if mtimes != self._rules_mtimes:
                await self.reload_rules("file changed")

    def _commit_async(self) -> None:
        assert self.source is not None
        positions = self.tracker.committable()
        if positions:
            self.source.commit_async(positions)
            self.metrics.commits.inc()

    def on_committed(self, positions: dict[TP, int]) -> None:
        self.tracker.mark_committed(positions)
        self.committed.update(positions)

    # --- rebalance (RebalanceHandler; coroutines run on the loop, called from the fetch thread) -
    async def on_assigned(self, tps: list[TP]) -> None:
        self.tracker.assign(tps)
        log_event(log, logging.INFO, "partitions assigned", partitions=_fmt(tps))

    async def on_revoking(self, tps: list[TP]) -> dict[TP, int]:
        """Finish what is queued or in flight for the partitions, then say what to commit."""
        assert self.sink is not None
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.tracker.open_records(tps) and time.monotonic() < deadline:
            self.sink.poll(0)
            await asyncio.sleep(0.005)
        if self.eos:
            return {}  # offsets were committed by each batch's transaction
        return self.tracker.committable(tps)

    async def on_revoked(self, tps: list[TP], *, lost: bool) -> None:
        abandoned = self.tracker.revoke(tps)
        n = sum(c.count for c in abandoned)
        self.abandoned += n
        for tp in tps:
            self.committed.pop(tp, None)
        log_event(
            log,
            logging.WARNING if (lost or n) else logging.INFO,
            "partitions lost" if lost else "partitions revoked",
            partitions=_fmt(tps),
            abandoned_records=n,
        )
        self._maybe_resume()

    # --- rules ---------------------------------------------------------------------------------
    def _stat_rules(self) -> dict[str, tuple[float, int] | None]:
        out: dict[str, tuple[float, int] | None] = {}
        for f in self.settings.rule_files:
            try:
                st = os.stat(f)
                out[str(f)] = (st.st_mtime, st.st_size)
            except OSError:
                out[str(f)] = None
        return out

    async def reload_rules(self, why: str) -> bool:
        """Load the rules again; on failure the old rules stay in force."""
        async with self._reload_lock:
            self._rules_mtimes = self._stat_rules()
            old = self.classifiers.current.version
            loop = asyncio.get_running_loop()
            try:
                # compiling a big rule set takes a while: off the loop, records keep flowing
                new = await loop.run_in_executor(None, self.classifiers.reload)
            except Exception as exc:
                self.reload_failures += 1
                self.metrics.rules_reload_failures.inc()
                log_event(
                    log,
                    logging.ERROR,
                    "rules reload failed; keeping the old rules",
                    why=why,
                    rules_version=old,
                    error=str(exc),
                )
                return False
            self.reloads += 1
            self.metrics.rules_reloads.inc()
            self.metrics.set_rules_version(new.version)
            self._cache_reset = True
            log_event(
                log, logging.INFO, "rules reloaded", why=why, old_version=old, version=new.version
            )
            return True

    # --- shutdown ------------------------------------------------------------------------------
    async def _request_stop(self) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    async def drain_and_close(self) -> None:
        """Stop fetching, finish in-flight records, commit, leave the group."""
        if self._draining:
            return
        self._draining = True
        self._stopping = True
        t0 = time.monotonic()
        log_event(log, logging.INFO, "stopping: draining", in_flight=self.tracker.in_flight)
        try:
            await asyncio.wait_for(self._fetch_done.wait(), 5.0)
        except TimeoutError:
            log_event(log, logging.WARNING, "fetch task did not stop in time")
        source, sink = self.source, self.sink
        if source is None or sink is None:
            return
        deadline = t0 + DRAIN_TIMEOUT_S
        while self.tracker.in_flight and time.monotonic() < deadline:
            sink.poll(0)
            await asyncio.sleep(0.005)
        positions = {} if self.eos else self.tracker.committable()
        ok = await source.run_in_fetch_thread(source.commit_sync, positions)
        if ok and positions:
            self.on_committed(positions)
        left = self.tracker.in_flight
        await source.close()  # leaves the group; revoke callbacks run (nothing left to commit)
        undelivered = sink.close(5.0)
        log_event(
            log,
            logging.INFO if not left else logging.WARNING,
            "stopped",
            consumed=self.consumed,
            committed=_fmt_positions(positions),
            uncommitted_records=left,
            undelivered=undelivered,
            seconds=round(time.monotonic() - t0, 3),
        )

    # --- introspection -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        source = self.source
        return {
            "worker_id": self.worker_id,
            "group": self.settings.group_id,
            "input_topic": self.settings.input_topic,
            "assigned": sorted(f"{t}:{p}" for t, p in (source.assignment if source else ())),
            "paused": sorted(f"{t}:{p}" for t, p in (source.paused if source else ())),
            "in_flight": self.tracker.in_flight,
            "in_flight_peak": self.in_flight_peak,
            "consumed": self.consumed,
            "batches": self.batches,
            "produced": self.sink.produced if self.sink else 0,
            "pauses": self.pauses,
            "abandoned": self.abandoned,
            "committed": {f"{t}:{p}": o for (t, p), o in sorted(self.committed.items())},
            "rules_version": self.classifiers.current.version,
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "stopping": self._stopping,
        }


def _settle_gc() -> None:
    """Keep the garbage collector off the hot path once everything is loaded.

    Start-up leaves a few hundred thousand long-lived objects (Faust, the rules, the clients).
    Every full collection traversed them all: 50-70 ms pauses, about once a second at full
    rate, which showed up as latency spikes and ~5% of the time. Frozen, they are never
    traversed again (reference counting still frees them); what is allocated later is
    collected as usual, with a larger young generation so short-lived batches die young.
    """
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def _fmt(tps: Iterable[TP]) -> str:
    return ",".join(f"{t}:{p}" for t, p in sorted(tps))


def _fmt_positions(positions: dict[TP, int]) -> str:
    return ",".join(f"{t}:{p}@{o}" for (t, p), o in sorted(positions.items()))


class _FaustWorker(faust.Worker):
    """Faust's worker with our signal handling: drain before stopping, SIGHUP reloads rules."""

    def __init__(self, app: faust.App, stream: StreamWorker, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.spinner = None  # a terminal spinner has no place in a service's log
        self._stream = stream
        self._drain_task: asyncio.Future[None] | None = None

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        self._stream._background_task(self._stream.reload_rules("SIGHUP"))

    def _on_sigterm(self) -> None:
        self._graceful(signal.SIGTERM)

    def _on_sigint(self) -> None:
        self._graceful(signal.SIGINT)

    def _graceful(self, sig: signal.Signals) -> None:
        if self._drain_task is not None:
            return  # already draining; a bounded drain finishes on its own
        log_event(log, logging.INFO, "signal received", signal=sig.name)

        async def drain_then_stop() -> None:
            try:
                await self._stream.drain_and_close()
            except Exception:
                log.exception("graceful stop failed")
                self._stream.exit_code = 1
            self._schedule_shutdown(sig)

        self._drain_task = asyncio.ensure_future(drain_then_stop())


def run_worker(settings: Settings, bootstrap: str, classifiers: Any) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    stream = StreamWorker(settings, bootstrap, classifiers=classifiers)
    stream.prepare()
    worker = _FaustWorker(
        stream.app,
        stream,
        loglevel=settings.log_level,
        override_logging=False,  # streamer.logs configured the root logger already
        quiet=True,
        redirect_stdouts=False,
    )
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return stream.exit_code or code
    return stream.exit_code
