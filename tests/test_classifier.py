"""Classifier: caches (separate eviction, counters), explain, reload, and the async pool."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamer.cache import LRUCache
from streamer.classifier import Classifier, ClassifierPool, ReloadableClassifier
from streamer.rules import RulesError

FIXTURES = Path(__file__).parent / "fixtures"
FILES = [FIXTURES / "basic.toml", FIXTURES / "second.json", FIXTURES / "third.json5"]


def test_lru_cache_evicts_least_recently_used() -> None:
    c: LRUCache[str, int] = LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)  # evicts b
    assert "b" not in c and "a" in c and "c" in c
    assert c.get("b") is None
    assert c.stats() == {"hits": 1, "misses": 1, "size": 2}
    zero: LRUCache[str, int] = LRUCache(0)
    zero.put("a", 1)
    assert len(zero) == 0


def test_classify_traps_end_to_end() -> None:
    c = Classifier.from_files(FILES)
    assert c.classify("550 5.1.1 <x@y>: nope").label == "InvalidRecipient"
    assert c.classify("550 User UNKNOWN").label == "InvalidRecipient"
    assert c.classify("custom failure ٤٢").label == "MyCustomLabel"  # Unicode \d
    assert c.classify("blocked by SpamHaus.").label == "SpamBlock"
    assert c.classify("blocked by xspamhaus").label == "Uncategorized"
    assert c.classify("Éspamhaus").label == "Uncategorized"  # Unicode \b
    assert [x.label for x in c.classify_many(["451 x", "nothing"])] == [
        "TransientFailure",
        "Uncategorized",
    ]


def test_uncategorized_flood_does_not_evict_categorized_entries() -> None:
    c = Classifier.from_files(FILES, cache_size=2, uncategorized_cache_size=2)
    c.classify("550 user unknown")
    c.classify("552 mailbox full")
    for i in range(100):
        c.classify(f"never seen {i}")
    c.classify("550 user unknown")
    c.classify("552 mailbox full")
    stats = c.cache_stats()
    assert stats["categorized"] == {"hits": 2, "misses": 2, "size": 2}
    assert stats["uncategorized"] == {"hits": 0, "misses": 100, "size": 2}
    c.classify("never seen 99")
    assert c.cache_stats()["uncategorized"]["hits"] == 1
    c.classify("never seen 0")  # evicted from the small uncategorized cache
    assert c.cache_stats()["uncategorized"]["misses"] == 101


def test_cache_returns_same_result_as_engine() -> None:
    c = Classifier.from_files(FILES)
    first = c.classify("550 user unknown")
    again = c.classify("550 user unknown")
    assert first is again and first == c.classify_uncached("550 user unknown")
    assert first.rule is not None and first.rule.index == 1


def test_explain_lists_winner_and_other_matches() -> None:
    c = Classifier.from_files(FILES)
    ex = c.explain("550 5.1.1 no such user")
    assert ex.label == "InvalidRecipient"
    assert ex.rule is not None and ex.rule.index == 0
    assert [r.index for r in ex.matches] == [0, 6]
    none = c.explain("hello")
    assert none.label == "Uncategorized" and none.rule is None and none.matches == []


def test_reload_swaps_and_failed_reload_keeps_old(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("[rules]\nA = ['alpha']\n")
    rc = ReloadableClassifier([f], cache_size=10)
    old = rc.current
    assert rc.classify("alpha").label == "A"
    f.write_text("[rules]\nB = ['alpha']\n")
    new = rc.reload()
    assert rc.current is new and new is not old
    assert rc.classify("alpha").label == "B"  # the old cache died with the old classifier
    assert new.version != old.version and rc.reloads == 1
    f.write_text("[rules]\nC = ['(?=x)']\n")
    with pytest.raises(RulesError, match="look-around"):
        rc.reload()
    assert rc.current is new and rc.classify("alpha").label == "B"
    assert rc.failures == 1 and rc.last_error is not None and "look-around" in rc.last_error


@pytest.mark.parametrize("pool_size", [1, 2])
def test_pool_batches_give_the_same_results(pool_size: int) -> None:
    c = Classifier.from_files(FILES)
    lines = [f"550 user unknown {i}" if i % 3 else f"nothing {i}" for i in range(50)]
    pool = ClassifierPool(c, pool_size=pool_size, back_pressure=1000)
    try:
        got = asyncio.run(pool.classify_batch(lines))
    finally:
        pool.close()
    assert [g.label for g in got] == [c.classify_uncached(x).label for x in lines]
    assert pool.in_flight == 0


def test_pool_back_pressure_bounds_in_flight() -> None:
    c = Classifier.from_files(FILES)
    pool = ClassifierPool(c, pool_size=2, back_pressure=8)
    seen: list[int] = []
    original = pool._run

    async def observing_run(lines):  # type: ignore[no-untyped-def]
        seen.append(pool.in_flight)
        await asyncio.sleep(0.01)  # keep the slice in flight while others try to enter
        return await original(lines)

    pool._run = observing_run  # type: ignore[method-assign]

    async def main() -> list[int]:
        batches = [[f"550 user unknown {b}-{i}" for i in range(5)] for b in range(6)]
        results = await asyncio.gather(*(pool.classify_batch(b) for b in batches))
        big = await pool.classify_batch([f"line {i}" for i in range(20)])  # sliced by 8
        return [len(r) for r in results] + [len(big)]

    try:
        sizes = asyncio.run(main())
    finally:
        pool.close()
    assert sizes == [5] * 6 + [20]
    assert max(seen) <= 8
    assert pool.blocked > 0 and pool.in_flight == 0


def test_pool_follows_reloads(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("[rules]\nA = ['x']\n")
    rc = ReloadableClassifier([f])
    pool = ClassifierPool(rc)
    assert asyncio.run(pool.submit("x")).label == "A"
    f.write_text("[rules]\nB = ['x']\n")
    rc.reload()
    assert asyncio.run(pool.submit("x")).label == "B"
