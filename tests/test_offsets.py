"""The offset tracker commits only the acknowledged prefix, per partition and generation."""

from __future__ import annotations

import random

from streamer.worker.offsets import OffsetChunk, OffsetTracker

TP0 = ("in", 0)
TP1 = ("in", 1)


def _chunk_with_outputs(
    tr: OffsetTracker, tp: tuple[str, int], first: int, last: int, outputs: int
) -> OffsetChunk:
    chunk = tr.track(tp[0], tp[1], first, last, last - first + 1)
    assert chunk is not None
    chunk.add_pending(outputs)
    chunk.seal()
    return chunk


def test_nothing_committable_until_acknowledged() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    c = _chunk_with_outputs(tr, TP0, 0, 9, 10)
    assert tr.in_flight == 10
    assert tr.committable() == {}
    for _ in range(9):
        c.ack()
    assert tr.committable() == {}
    assert tr.in_flight == 10
    c.ack()
    assert tr.in_flight == 0
    assert tr.committable() == {TP0: 10}


def _held(tr: OffsetTracker, first: int, last: int, outputs: int) -> OffsetChunk:
    """A counted chunk (analytics on): held for the stats update, its outputs handed over."""
    chunk = tr.track("in", 0, first, last, last - first + 1)
    assert chunk is not None
    chunk.hold()
    chunk.add_pending(outputs)
    chunk.seal()
    return chunk


def test_a_held_chunk_settles_when_its_outputs_are_acknowledged_and_commits_on_release() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    c = _held(tr, 0, 9, 2)
    c.ack()
    assert (tr.in_flight, tr.settled, tr.unsettled) == (10, 0, 10)
    c.ack()  # outputs all acknowledged: waits only for the stats update
    assert (tr.in_flight, tr.settled, tr.unsettled) == (10, 10, 0)
    assert tr.committable() == {}
    c.release()
    assert (tr.in_flight, tr.settled, tr.unsettled) == (0, 0, 0)
    assert tr.committable() == {TP0: 10}


def test_a_chunk_released_before_its_outputs_finishes_on_its_last_acknowledgement() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    c = _held(tr, 0, 4, 1)
    c.release()  # the update was acknowledged first
    assert (tr.in_flight, tr.settled) == (5, 0)
    c.ack()
    assert (tr.in_flight, tr.settled) == (0, 0)
    assert tr.committable() == {TP0: 5}


def test_revoking_a_settled_chunk_counts_it_out_once() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    c = _held(tr, 0, 4, 1)
    c.ack()
    assert tr.revoke([TP0]) == [c]
    assert (tr.in_flight, tr.settled) == (0, 0)
    c.release()  # its update acknowledged after the revocation
    assert (tr.in_flight, tr.settled) == (0, 0)


def test_a_transaction_finishes_a_settled_chunk() -> None:
    """Exactly-once: the commit finishes the transaction's chunks, held or not."""
    tr = OffsetTracker()
    tr.assign([TP0])
    c = _held(tr, 0, 4, 1)
    c.ack()
    c.finish()
    assert (tr.in_flight, tr.settled) == (0, 0)
    c.release()
    assert (tr.in_flight, tr.settled) == (0, 0)
    assert tr.committable() == {TP0: 5}


def test_only_contiguous_prefix_is_committed() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    a = _chunk_with_outputs(tr, TP0, 0, 99, 1)
    b = _chunk_with_outputs(tr, TP0, 100, 199, 1)
    c = _chunk_with_outputs(tr, TP0, 205, 300, 1)  # a gap in offsets (compaction) is fine
    c.ack()
    b.ack()
    assert tr.committable() == {}, "a is not acknowledged: nothing after it may be committed"
    a.ack()
    assert tr.committable() == {TP0: 301}


def test_unsealed_chunk_blocks_even_when_acks_caught_up() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    chunk = tr.track("in", 0, 0, 4, 5)
    assert chunk is not None
    chunk.add_pending(1)
    chunk.ack()  # acknowledged before the producer loop finished this chunk
    assert tr.committable() == {}
    chunk.seal()
    assert tr.committable() == {TP0: 5}


def test_chunk_without_outputs_is_done_when_sealed() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    _chunk_with_outputs(tr, TP0, 0, 2, 0)  # every record dropped
    assert tr.committable() == {TP0: 3}
    assert tr.in_flight == 0


def test_partitions_are_independent_and_random_ack_order() -> None:
    rng = random.Random(7)
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    acks = []
    for tp in (TP0, TP1):
        for i in range(50):
            c = _chunk_with_outputs(tr, tp, i * 10, i * 10 + 9, 3)
            acks.extend([c] * 3)
    rng.shuffle(acks)
    seen_max: dict = {}
    for n, c in enumerate(acks):
        c.ack()
        if n % 17 == 0:
            pos = tr.committable()
            for tp, p in pos.items():
                # positions only move forward and never pass an unacknowledged chunk
                assert p > seen_max.get(tp, -1)
                seen_max[tp] = p
                pt = tr.partitions[tp]
                assert all(not ch.done or ch.first >= p for ch in pt.chunks)
            tr.mark_committed(pos)
    assert tr.committable() in ({TP0: 500, TP1: 500}, {TP0: 500}, {TP1: 500}, {})
    tr.mark_committed(tr.committable())
    assert {tp: tr.partitions[tp].committed for tp in (TP0, TP1)} == {TP0: 500, TP1: 500}
    assert tr.in_flight == 0


def test_failed_commit_is_retried() -> None:
    tr = OffsetTracker()
    tr.assign([TP0])
    _chunk_with_outputs(tr, TP0, 0, 9, 0)
    assert tr.committable() == {TP0: 10}
    # the commit failed: not marked, so the same position is offered again
    assert tr.committable() == {TP0: 10}
    tr.mark_committed({TP0: 10})
    assert tr.committable() == {}


def test_revoke_abandons_and_late_acks_are_ignored() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    old = _chunk_with_outputs(tr, TP0, 0, 9, 2)
    _chunk_with_outputs(tr, TP1, 0, 9, 0)
    assert tr.in_flight == 10
    abandoned = tr.revoke([TP0])
    assert abandoned == [old] and old.abandoned
    assert tr.in_flight == 0
    assert tr.track("in", 0, 10, 19, 10) is None, "not owned any more"
    # assigned again (new generation): the old chunk's acknowledgements must not count
    tr.assign([TP0])
    new = _chunk_with_outputs(tr, TP0, 0, 9, 1)
    old.ack()
    old.ack()
    assert tr.in_flight == 10
    assert TP0 not in tr.committable()
    new.ack()
    assert tr.committable()[TP0] == 10
    assert tr.in_flight == 0


def test_open_records_counts_unfinished_chunks() -> None:
    tr = OffsetTracker()
    tr.assign([TP0, TP1])
    a = _chunk_with_outputs(tr, TP0, 0, 9, 1)
    _chunk_with_outputs(tr, TP1, 0, 4, 1)
    assert tr.open_records([TP0]) == 10
    assert tr.open_records([TP0, TP1]) == 15
    a.ack()
    assert tr.open_records([TP0]) == 0
