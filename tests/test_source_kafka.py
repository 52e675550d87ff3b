"""The source's fetch against the real broker: what a fetch waits for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from confluent_kafka import Producer

from streamer.config import Settings
from streamer.kafka.source import Source

#: A fetch's longest wait here: long enough that waiting it out is unmistakable.
WAIT_S = 10.0


def test_a_fetch_returns_once_records_are_there_not_when_its_wait_ends(
    kafka_bootstrap: str,
    kafka_settings: Settings,
    new_topic: Callable[..., str],
    loop: asyncio.AbstractEventLoop,
) -> None:
    # fewer records than a batch holds: consume(2000, WAIT_S) alone returned them only after
    # WAIT_S, and at moderate rates every batch of the worker waited out its timeout
    topic = new_topic(1)
    settings = kafka_settings.model_copy(update={"input_topic": topic, "group_id": f"g.{topic}"})
    source = Source(settings, kafka_bootstrap, client_id="t", loop=loop)
    source.subscribe()
    deadline = time.monotonic() + 60
    try:
        while not source.assignment:  # joining the group
            assert time.monotonic() < deadline, "never assigned"
            assert source._consume(100, 0.2)[0] == []
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(30):
            producer.produce(topic, str(i).encode())
        assert producer.flush(10) == 0
        got: list[bytes] = []
        while len(got) < 30:
            assert time.monotonic() < deadline, f"{len(got)} of 30 records fetched"
            started = time.monotonic()
            messages = source._consume(2000, WAIT_S)[0]
            if messages:
                assert time.monotonic() - started < WAIT_S / 2
            got += [m.value() for m in messages]
        assert got == [str(i).encode() for i in range(30)]  # every record, once, in order
    finally:
        asyncio.run_coroutine_threadsafe(source.close(), loop).result(30)
