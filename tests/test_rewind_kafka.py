"""Exactly-once recovery in place, against a real broker.

A transaction carries the consumer group's generation with its offsets. When the group
rebalanced after the worker took that generation, the broker refuses the offsets
(``ILLEGAL_GENERATION``): the transaction was overtaken. Under load that happens at random, to
about 4 in 10 joins or leaves; here it is made to happen on cue. The worker runs in this
process, a second consumer joins the group, and the worker's next transaction is given the
generation from before the join (everything else, the broker's refusal included, is real).
The worker must abort it, read its partitions again from the last commit without leaving the
group, and in the end every input must be in the output exactly once, with stats that count
every record exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer
from test_worker_kafka import _check_every_input_came_out, _types_sent
from worker_harness import open_transactions, produce, read_topic, stats_totals, wait_until

from streamer.classifier import ReloadableClassifier
from streamer.config import Settings
from streamer.devkit.sample import generate
from streamer.worker.stream import StreamWorker, prepare

MAX_BYTES = 16_384  # the too-large samples exceed this, and stay below the broker's limit


class StaleOnce:
    """The worker's producer, handing the next ``send_offsets_to_transaction`` an old group
    generation when armed (``stale``); every call goes to the real producer."""

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self.stale: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)

    def send_offsets_to_transaction(self, offsets: Any, meta: Any, timeout: float) -> None:
        stale, self.stale = self.stale, None
        self._producer.send_offsets_to_transaction(offsets, stale or meta, timeout)


def _run(stream: StreamWorker, stop: threading.Event) -> None:
    """What the Faust run loop does around a StreamWorker, without Faust: fetch, process,
    poll, housekeeping; then drain."""

    async def main() -> None:
        prepare(stream)
        batches: asyncio.Queue[Any] = asyncio.Queue(4)
        stream.on_stop = stop.set

        async def agent() -> None:
            while True:
                await stream.process(await batches.get())

        async def timer() -> None:
            while True:
                await asyncio.sleep(0.5)
                await stream.housekeeping()

        tasks = [
            asyncio.ensure_future(c)
            for c in (stream.fetch_loop(batches.put), agent(), stream.poll_loop(), timer())
        ]
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await stream.drain_and_close()
        for t in tasks:
            t.cancel()

    asyncio.run(main())


@pytest.mark.long
def test_an_overtaken_transaction_is_read_again_in_place_exactly_once(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    inp, out = new_topic(4), new_topic(4)
    group = f"g-{inp}"
    settings = Settings(
        bootstrap=kafka_bootstrap,
        input_topic=inp,
        output_topic=out,
        stats_topic=f"{inp}.stats",
        suppressions_topic=f"{inp}.suppressions",
        group_id=group,
        exactly_once=True,
        worker_id="w-rewind",
        max_message_bytes=MAX_BYTES,
        metrics_port=0,
        web_port=0,
        state_dir=tmp_path,
    )
    classifiers = ReloadableClassifier(settings.rule_files)
    stream = StreamWorker(settings, kafka_bootstrap, classifiers=classifiers)
    stop = threading.Event()
    worker = threading.Thread(target=_run, args=(stream, stop), daemon=True)
    caplog.set_level(logging.INFO, logger="streamer")
    worker.start()
    joined: Consumer | None = None
    try:
        wait_until(
            lambda: stream.source is not None and len(stream.source.assignment) == 4,
            60,
            "4 partitions",
        )
        assert stream.checkpoint is not None and stream.source is not None
        producer = StaleOnce(stream.checkpoint.producer)  # type: ignore[attr-defined]
        stream.checkpoint.producer = producer  # type: ignore[attr-defined]

        first = list(generate(3_000, seed=71, malformed_fraction=0.01, max_message_bytes=MAX_BYTES))
        produce(kafka_bootstrap, inp, first)
        good = sum(not m.kind.startswith("malformed") for m in first)
        wait_until(lambda: len(read_topic(kafka_bootstrap, out)) >= good, 60, "the first outputs")
        stale = stream.source.group_metadata

        # A second member joins: the group rebalances and its generation moves on.
        joined = Consumer(
            {
                "bootstrap.servers": kafka_bootstrap,
                "group.id": group,
                "partition.assignment.strategy": "cooperative-sticky",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
            }
        )
        joined.subscribe([inp])
        member = joined

        def rebalanced() -> bool:
            member.poll(0.2)  # takes part in the rebalance; reads, never commits
            return bool(member.assignment()) and len(stream.source.assignment) == 2  # type: ignore[union-attr]

        wait_until(rebalanced, 60, "the second member to get partitions", interval=0)
        producer.stale = stale  # the worker's next transaction carries the old generation
        second = list(
            generate(3_000, seed=72, malformed_fraction=0.01, max_message_bytes=MAX_BYTES)
        )
        produce(kafka_bootstrap, inp, second)

        def rewound() -> bool:
            member.poll(0.1)
            return stream.metrics.total(stream.metrics.rewinds) >= 1

        wait_until(rewound, 60, "the worker to rewind", interval=0)
        assert worker.is_alive() and not stream.stopping, "the worker stopped instead"
        joined.close()  # leaves without committing: its partitions come back to the worker
        joined = None
        sent = first + second
        good = sum(not m.kind.startswith("malformed") for m in sent)
        wait_until(
            lambda: len(read_topic(kafka_bootstrap, out)) >= good, 90, "every output", interval=1
        )
    finally:
        if joined is not None:
            joined.close()
        stop.set()
        worker.join(60)
    assert not worker.is_alive() and stream.exit_code == 0
    written = [out, f"{inp}.dlq", f"{inp}.stats"]
    wait_until(lambda: not open_transactions(kafka_bootstrap, written), 30, "no open transaction")

    outputs = read_topic(kafka_bootstrap, out)
    dlq = read_topic(kafka_bootstrap, f"{inp}.dlq")
    seen = _check_every_input_came_out(sent, outputs, dlq)
    assert sum(n - 1 for n in seen.values() if n > 1) == 0, "an input came out twice"
    assert len(outputs) == good and len(dlq) == len(sent) - good
    # The aborted records were counted by the windows before the abort; the new session counts
    # them again, the old one's committed rows never did: every record once.
    types, labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert types == _types_sent(sent)
    enriched = [orjson.loads(o.value or b"{}") for o in outputs]
    assert labels == Counter(r["bounce_classification"] for r in enriched if "classification" in r)
    sessions = {orjson.loads(v or b"{}")["session"] for v in _stats_values(kafka_bootstrap, inp)}
    # The abort can leave librdkafka's next transaction failing on its sequence numbers (it
    # purged outputs in flight): that one is rewound too. Each rewind starts a session (one
    # whose only transaction was aborted never shows in the topic). Follow-ups seen: up to 3
    # (4 once, on CI); a storm of them would show here.
    rewinds = stream.metrics.total(stream.metrics.rewinds)
    assert 1 <= rewinds <= 6 and 2 <= len(sessions) <= rewinds + 1, (rewinds, sessions)
    # the deliverability metrics count what committed: the aborted records once, too
    metric_labels = sum(
        sample.value
        for metric in stream.metrics.registry.collect()
        if metric.name == "streamer_labels"
        for sample in metric.samples
        if sample.name == "streamer_labels_total"
    )
    assert metric_labels == labels.total()
    messages = [r.getMessage() for r in caplog.records]
    assert any("rewound to the last commit" in m for m in messages)
    assert (
        "transaction failed; stopping" not in messages and "rewind failed; stopping" not in messages
    )


def _stats_values(bootstrap: str, inp: str) -> list[bytes | None]:
    """The worker sessions' partial rows (the rollup stage's input: they name their session)."""
    return [r.value for r in read_topic(bootstrap, f"{inp}.stats.partials")]
