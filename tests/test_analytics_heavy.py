"""Space-saving summary and bounded dimensions: the bound holds, heavy hitters survive."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.analytics.heavy import BoundedDimension, SpaceSaving


def test_bound_holds_under_100k_unique_keys_and_heavy_hitters_survive() -> None:
    ss: SpaceSaving[str] = SpaceSaving(100)
    rng = random.Random(7)
    truth: Counter[str] = Counter()
    for i in range(100_000):
        key = f"heavy{rng.randrange(5)}" if i % 4 == 0 else f"unique{i}"
        ss.add(key)
        truth[key] += 1
        assert len(ss) <= 100
    assert len(ss._heap) == len(ss)  # one heap entry per tracked key: memory is bounded too
    top5 = {k for k, _ in ss.top(5)}
    assert top5 == {f"heavy{i}" for i in range(5)}
    for key, count in ss.top(5):
        # space-saving guarantee: never under-counts, over-counts by at most error(key)
        assert truth[key] <= count <= truth[key] + ss.error(key)
    assert ss.total == 100_000


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 8),
    st.lists(st.tuples(st.integers(0, 30), st.integers(1, 5)), max_size=300),
)
def test_space_saving_guarantees(capacity: int, stream: list[tuple[int, int]]) -> None:
    ss: SpaceSaving[int] = SpaceSaving(capacity)
    truth: Counter[int] = Counter()
    for key, n in stream:
        ss.add(key, n)
        truth[key] += n
        assert len(ss) <= capacity
    total = sum(truth.values())
    assert ss.total == total
    assert sum(c for _, c in ss.items()) == total  # space-saving keeps the total exactly
    for key, count in ss.items():
        assert truth[key] <= count <= truth[key] + ss.error(key)
    # every key above total / capacity is tracked
    for key, n in truth.items():
        if n > total / capacity:
            assert key in ss


def test_add_reports_the_evicted_key_and_top_is_ordered() -> None:
    ss: SpaceSaving[str] = SpaceSaving(2)
    assert ss.add("a", 5) is None
    assert ss.add("b", 1) is None
    assert ss.add("c") == "b"  # the minimum goes; c inherits its count as error
    assert ss.count("c") == 2 and ss.error("c") == 1
    assert ss.top() == [("a", 5), ("c", 2)]
    assert ss.top(1) == [("a", 5)]


def test_scale_forgets_and_keeps_the_heap_consistent() -> None:
    ss: SpaceSaving[str] = SpaceSaving(3)
    for k, n in (("a", 10), ("b", 1), ("c", 4)):
        ss.add(k, n)
    ss.scale(0.5)
    assert dict(ss.items()) == {"a": 5, "c": 2}
    ss.add("d")
    ss.add("e")  # evicts the minimum correctly after the rebuild
    assert len(ss) == 3 and "a" in ss


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SpaceSaving(0)


def test_bounded_dimension_small_sets_never_see_other() -> None:
    dim = BoundedDimension(10)
    assert [dim.map(v) for v in ["a", "b", "a", "c"]] == ["a", "b", "a", "c"]


def test_bounded_dimension_bound_and_stability() -> None:
    dim = BoundedDimension(50, rebalance_every=0)
    out = [dim.map(f"v{i}") for i in range(100_000)]
    assert len(dim) == 50
    assert len(dim.summary) <= 200
    assert len(set(out)) == 51  # the first 50 values and "other"
    # between rebalances a value's mapping never changes
    assert dim.map("v1") == "v1" and dim.map("v99999") == "other"
    assert dim.map("v99999") == "other"


def test_bounded_dimension_rebalance_admits_new_heavy_values() -> None:
    dim = BoundedDimension(2, rebalance_every=0)
    for v in ["old1", "old2"]:
        dim.map(v)
    for _ in range(100):
        assert dim.map("new") == "other"  # stable until the next rebalance
    dim.rebalance()
    assert dim.map("new") == "new"
    assert len(dim) <= 2


def test_bounded_dimension_automatic_rebalance() -> None:
    dim = BoundedDimension(1, rebalance_every=10)
    dim.map("a")
    results = [dim.map("b") for _ in range(20)]
    assert results[0] == "other" and results[-1] == "b"
