"""The source's request queue and rebalance callbacks, without a broker.

The consumer is a real confluent-kafka Consumer pointed at a closed loopback port, wrapped to
record the calls the source makes on it. The fetch thread is played by the test's own thread;
the event loop runs in another one, as in the worker.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from streamer.config import Settings
from streamer.kafka.source import TP, RebalanceHandler, Source


class Recording:
    """Forwards to the real consumer, recording the calls that change its state."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.calls: list[tuple[str, Any]] = []

    def _tps(self, parts: list[TopicPartition]) -> list[tuple[str, int, int]]:
        return sorted((p.topic, p.partition, p.offset) for p in parts)

    def pause(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("pause", self._tps(parts)))

    def resume(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("resume", self._tps(parts)))

    def incremental_assign(self, parts: list[TopicPartition]) -> None:
        self.calls.append(("assign", self._tps(parts)))

    def commit(self, offsets: list[TopicPartition], asynchronous: bool) -> Any:
        self.calls.append(("commit-async" if asynchronous else "commit", self._tps(offsets)))
        return None if asynchronous else offsets

    def consumer_group_metadata(self) -> Any:
        return "metadata"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)


class Handler(RebalanceHandler):
    def __init__(self, to_commit: dict[TP, int]) -> None:
        self.events: list[tuple[str, Any]] = []
        self.to_commit = to_commit

    async def on_assigned(self, tps: list[TP]) -> None:
        self.events.append(("assigned", sorted(tps)))

    async def on_revoking(self, tps: list[TP]) -> dict[TP, int]:
        self.events.append(("revoking", sorted(tps)))
        return {tp: o for tp, o in self.to_commit.items() if tp in tps}

    async def on_revoked(self, tps: list[TP], *, lost: bool) -> None:
        self.events.append(("lost" if lost else "revoked", sorted(tps)))

    def on_committed(self, positions: dict[TP, int]) -> None:
        self.events.append(("committed", positions))


def _source(loop: asyncio.AbstractEventLoop, tmp_path: Path, handler: Handler) -> Source:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    source = Source(settings, "127.0.0.1:9", client_id="t", handler=handler, loop=loop, log_level=0)
    source.consumer = Recording(source.consumer)  # type: ignore[assignment]
    return source


def _calls(source: Source) -> list[tuple[str, Any]]:
    return source.consumer.calls  # type: ignore[attr-defined, no-any-return]


def _sync(loop: asyncio.AbstractEventLoop) -> None:
    """Wait until the loop ran what was scheduled on it before."""
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(5)


def _parts(*tps: TP) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in tps]


def test_requests_are_applied_by_the_fetch_thread_in_order(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    source = _source(loop, tmp_path, Handler({}))
    source.assignment = {("in", 0), ("in", 1)}
    assert source.pause() == 2 and source.want_paused
    assert _calls(source) == []  # nothing happens on the caller's thread
    source._run_ops()
    assert _calls(source) == [("pause", [("in", 0, -1001), ("in", 1, -1001)])]
    assert source.paused == {("in", 0), ("in", 1)}
    assert source.resume() == 2
    source._run_ops()
    assert _calls(source)[-1] == ("resume", [("in", 0, -1001), ("in", 1, -1001)])
    assert source.paused == set()


def test_a_pause_resumed_before_it_ran_does_nothing(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    source = _source(loop, tmp_path, Handler({}))
    source.assignment = {("in", 0)}
    source.pause()
    source.resume()
    source._run_ops()
    assert _calls(source) == [] and not source.want_paused


def test_async_commit_skips_partitions_revoked_since_the_request(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    source = _source(loop, tmp_path, Handler({}))
    source.assignment = {("in", 0), ("in", 1)}
    source.commit_async({("in", 0): 10, ("in", 1): 20})
    source.assignment.discard(("in", 1))  # revoked (and committed synchronously) meanwhile
    source._run_ops()
    assert _calls(source) == [("commit-async", [("in", 0, 10)])]


def test_assignment_waits_for_the_handler_and_new_partitions_start_paused(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    handler = Handler({})
    source = _source(loop, tmp_path, handler)
    source._cb_assign(source.consumer, _parts(("in", 0)))
    source.want_paused = True  # back-pressure is on when the next partitions arrive
    source._cb_assign(source.consumer, _parts(("in", 1)))
    assert handler.events == [("assigned", [("in", 0)]), ("assigned", [("in", 1)])]
    assert _calls(source) == [
        ("assign", [("in", 0, -1001)]),
        ("assign", [("in", 1, -1001)]),
        ("pause", [("in", 1, -1001)]),
    ]
    assert source.assignment == {("in", 0), ("in", 1)} and source.paused == {("in", 1)}


def test_revoke_finishes_commits_synchronously_then_forgets(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    handler = Handler({("in", 0): 42, ("in", 1): 7})
    source = _source(loop, tmp_path, handler)
    source._cb_assign(source.consumer, _parts(("in", 0), ("in", 1)))
    source._cb_revoke(source.consumer, _parts(("in", 0)))
    _sync(loop)
    assert ("commit", [("in", 0, 42)]) in _calls(source)
    assert handler.events[1:] == [
        ("revoking", [("in", 0)]),
        ("committed", {("in", 0): 42}),  # before the partition is forgotten
        ("revoked", [("in", 0)]),
    ]
    assert source.assignment == {("in", 1)}


def test_lost_partitions_are_never_committed(
    loop: asyncio.AbstractEventLoop, tmp_path: Path
) -> None:
    handler = Handler({("in", 0): 42})
    source = _source(loop, tmp_path, handler)
    source._cb_assign(source.consumer, _parts(("in", 0)))
    source._cb_lost(source.consumer, _parts(("in", 0)))
    assert not [c for c in _calls(source) if c[0].startswith("commit")]
    assert handler.events[-1] == ("lost", [("in", 0)]) and source.assignment == set()
