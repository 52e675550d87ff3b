"""The run loop: a Faust app around the ``StreamWorker`` (agent, tasks, timer, signals, web).

Faust's per-event Stream machinery costs ~100 µs per record, so Faust never touches individual
records here: Kafka I/O goes through confluent-kafka (``streamer.kafka.source``/``sink``) and
Faust runs the application around it, paying its cost once per *batch*:

- a task runs ``StreamWorker.fetch_loop``, which puts each batch, as one Python object, on an
  in-memory Faust channel (no serialisation, no copy);
- the ``classify`` agent reads batches from the channel and runs ``StreamWorker.process``;
- a task serves producer acknowledgements (``poll_loop``); a timer does the housekeeping;
- SIGTERM/SIGINT drain (stop fetching, finish in flight, commit, leave the group) and exit;
  SIGHUP reloads the rules; a fatal error inside the worker takes the same graceful path;
- a Faust web view ``/status`` reports the worker's state (when ``web_port`` is not 0).

Faust runs without Kafka clients of its own (``_AppBoot``): no Faust consumer group to rebalance
when workers come and go, no leader topic; our consumer group is the only one. After start-up
the garbage collector's long-lived objects are frozen (``settle_gc``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from pathlib import Path
from typing import Any

import faust
from faust.app.base import BootStrategy
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streamer.classifier import ReloadableClassifier
from streamer.config import Settings
from streamer.logs import log_event
from streamer.redis_mirror import start_mirror
from streamer.worker.processing import Batch
from streamer.worker.stream import StreamWorker, prepare, worker_status

log = logging.getLogger("streamer.worker")

HOUSEKEEPING_INTERVAL_S = 0.5
#: Batches queued between the fetch task and the agent.
CHANNEL_BATCHES = 4
#: Young-generation GC threshold: the default (700 allocations) runs a collection every few
#: records; surviving batches then get promoted and full collections follow.
GC_GEN0_THRESHOLD = 10_000


class BatchChannel(faust.Channel):  # type: ignore[type-arg]
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
    def queue(self) -> ThrowableQueue:  # type: ignore[type-arg]
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


def build_app(stream: StreamWorker) -> faust.App:
    """The Faust app running ``stream``: agent, tasks, timer, ``/status`` and ``/stats``."""
    s = stream.settings
    datadir = Path(s.state_dir) / "faust" / stream.worker_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = _App(
        f"{s.group_id}-app",
        broker=_faust_broker_url(stream.bootstrap),
        autodiscover=False,
        datadir=str(datadir),
        web_enabled=s.web_port != 0,
        web_port=s.web_port or 6066,
        web_bind=s.web_host,
        web_host=s.web_host,
    )
    channel = BatchChannel(app, maxsize=CHANNEL_BATCHES)

    @app.agent(channel, name="classify", concurrency=1)
    async def classify(batches: faust.StreamT[Batch]) -> None:
        # One Faust event per batch: Faust's per-event cost is paid per ~batch_size records.
        async for batch in batches:
            await stream.process(batch)

    @app.task  # type: ignore[untyped-decorator]
    async def fetch() -> None:
        await stream.fetch_loop(channel.put, started=settle_gc)

    @app.task  # type: ignore[untyped-decorator]
    async def poll_producer() -> None:
        await stream.poll_loop()

    @app.timer(HOUSEKEEPING_INTERVAL_S)  # type: ignore[untyped-decorator]
    async def housekeeping() -> None:
        await stream.housekeeping()

    @app.page("/status")
    async def status(web: Any, request: Any) -> Any:
        return web.json(worker_status(stream))

    @app.page("/stats")
    async def stats(web: Any, request: Any) -> Any:
        publisher = stream.stats
        rows = publisher.snapshot() if publisher is not None else []
        return web.json({"session": publisher.session if publisher else None, "rows": rows})

    return app


def settle_gc() -> None:
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


class _FaustWorker(faust.Worker):
    """Faust's worker with our signal handling: drain before stopping, SIGHUP reloads rules."""

    def __init__(self, app: faust.App, stream: StreamWorker, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.spinner = None  # a terminal spinner has no place in a service's log
        self._stream = stream
        self._drain_task: asyncio.Future[None] | None = None
        stream.on_stop = lambda: self.stop_gracefully("fatal error")

    def install_signal_handlers(self) -> None:
        super().install_signal_handlers()
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        self._stream.in_background(self._stream.reloader.reload("SIGHUP"))

    def _on_sigterm(self) -> None:
        self.stop_gracefully(signal.SIGTERM.name)

    def _on_sigint(self) -> None:
        self.stop_gracefully(signal.SIGINT.name)

    def stop_gracefully(self, why: str) -> None:
        """Drain the stream worker, then stop the app (once, whatever asks first)."""
        if self._drain_task is not None:
            return  # already draining; a bounded drain finishes on its own
        log_event(log, logging.INFO, "stopping", why=why)

        async def drain_then_stop() -> None:
            try:
                await self._stream.drain_and_close()
            except Exception:
                log.exception("graceful stop failed")
                self._stream.exit_code = 1
            self._schedule_shutdown(signal.SIGTERM)

        self._drain_task = asyncio.ensure_future(drain_then_stop(), loop=self.loop)


def run_worker(settings: Settings, bootstrap: str, classifiers: ReloadableClassifier) -> int:
    """Run until SIGTERM/SIGINT or a fatal error; returns the process exit code."""
    stream = StreamWorker(settings, bootstrap, classifiers=classifiers)
    prepare(stream)
    worker = _FaustWorker(
        build_app(stream),
        stream,
        loglevel=settings.log_level,
        override_logging=False,  # streamer.logs configured the root logger already
        quiet=True,
        redirect_stdouts=False,
    )
    # suppressions_redis_url: the suppression list mirrored into Redis, beside the stream
    mirror = start_mirror(settings, bootstrap, stream.metrics.registry, stream.worker_id)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return stream.exit_code or code
    finally:
        if mirror is not None:
            mirror.stop()
    return stream.exit_code
