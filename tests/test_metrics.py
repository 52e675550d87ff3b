"""Worker metrics that need logic of their own: the bounded top-sites gauge."""

from __future__ import annotations

from collections import Counter as Tally

from prometheus_client import CollectorRegistry, generate_latest

from streamer.metrics import Metrics, TopSites
from streamer.pipeline import BatchStats


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _series(top: TopSites) -> dict[tuple[str, str], float]:
    (family,) = list(top.collect())
    return {(s.labels["site"], s.labels["label"]): s.value for s in family.samples}


def test_top_sites_per_label_bounded_and_sliding() -> None:
    clock = FakeClock()
    top = TopSites(top=2, window=30.0, buckets=3, clock=clock)
    top.add({("a", "Spam"): 5, ("b", "Spam"): 3, ("c", "Spam"): 1, ("a", "Quota"): 2})
    assert not top.refresh() and _series(top) == {}, "nothing exported before a bucket closes"
    clock.now += 10
    assert top.refresh()
    # only the top 2 sites of each label; site "c" is not exported at all
    assert _series(top) == {("a", "Spam"): 5, ("b", "Spam"): 3, ("a", "Quota"): 2}
    clock.now += 10
    top.add({("c", "Spam"): 10})
    clock.now += 10  # the bucket holding c's 10 closes now
    top.refresh()
    assert _series(top) == {("c", "Spam"): 11, ("a", "Spam"): 5, ("a", "Quota"): 2}
    # the first bucket leaves the 30 s window: a and b are gone, c keeps its later 10
    clock.now += 10
    top.refresh()
    assert _series(top) == {("c", "Spam"): 10}
    # a long idle spell empties the window whatever the number of refreshes missed
    clock.now += 3600
    top.refresh()
    assert _series(top) == {}


def test_top_sites_bucket_keeps_only_its_largest_pairs() -> None:
    clock = FakeClock()
    top = TopSites(top=10, window=10.0, buckets=1, max_keys=3, clock=clock)
    top.add({(f"s{i}", "L"): i for i in range(1, 11)})
    clock.now += 10
    top.refresh()
    assert _series(top) == {("s10", "L"): 10, ("s9", "L"): 9, ("s8", "L"): 8}


def test_top_sites_exported_with_the_other_metrics() -> None:
    m = Metrics(CollectorRegistry())
    clock = FakeClock()
    m.top_sites.clock = clock
    m.top_sites._bucket_start = clock.now
    m.record_batch(
        BatchStats(
            events_in=Tally({"Bounce": 2}),
            events_out=Tally({("Bounce", "Spam"): 2}),
            classify_seconds=[1e-5, 2e-5],
            sites=Tally({("mx1", "Spam"): 2}),
        )
    )
    clock.now += m.top_sites.width
    m.top_sites.refresh()
    text = generate_latest(m.registry).decode()
    assert "# TYPE streamer_top_sites gauge" in text
    assert 'streamer_top_sites{label="Spam",site="mx1"} 2.0' in text


def test_record_type_series_stay_bounded_whatever_the_input_says() -> None:
    m = Metrics()
    hostile = {f"Type{i}": 1 for i in range(1000)}
    m.record_batch(
        BatchStats(
            events_in=Tally({**hostile, "Bounce": 2}), events_out=Tally({("Type7", "none"): 1})
        )
    )
    r = m.registry
    assert r.get_sample_value("streamer_events_in_total", {"record_type": "other"}) == 1000
    assert r.get_sample_value("streamer_events_in_total", {"record_type": "Bounce"}) == 2
    types = {
        s.labels["record_type"]
        for metric in r.collect()
        if metric.name == "streamer_events_in"
        for s in metric.samples
    }
    assert types == {"other", "Bounce"}
    out = {"record_type": "other", "label": "none"}
    assert r.get_sample_value("streamer_events_out_total", out) == 1


def test_outcome_series_stay_bounded_when_the_heaviest_values_change() -> None:
    """Values cycling through far more than the bound: each rebalance admits others, and the
    series of the values it drops are removed, so the exported series stay bounded."""
    from streamer.analytics.batch import Folded
    from streamer.metrics import DeliverabilityMetrics

    registry = CollectorRegistry()
    metrics = DeliverabilityMetrics(registry, max_values=5)
    for fold in range(400):  # 400 folds of 1,000 records: a few rebalances (every 100,000)
        batch = Folded()
        for i in range(40):
            v = f"t{(fold * 40 + i) * 7 % 997}"
            key = (0, "p", f"pool{v}", f"src{v}", v)
            batch.add(key, 25)
            batch.count(key, "Bounce", "InvalidRecipient", "hard", 25)
        metrics.record(batch)
    (family,) = [f for f in registry.collect() if f.name == "streamer_outcomes"]
    values = {s.labels["value"] for s in family.samples if s.name.endswith("_total")}
    per_dimension = {
        d: {s.labels["value"] for s in family.samples if s.labels["dimension"] == d}
        for d in ("provider", "egress_pool", "egress_source", "tenant")
    }
    assert all(len(v) <= 5 + 1 for v in per_dimension.values()), per_dimension
    assert "other" in values
    assert len(metrics._children) <= 4 * 6
