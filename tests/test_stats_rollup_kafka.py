"""Stats a sink can upsert, on the real broker: several workers, the records of each window and
dimension set spread over the input partitions and arriving out of event-time order (windows the
workers forget and count again: late records), a kill -9, a restart and rebalances in between.

Exactly once: the latest row per key (window + dimensions) of the stats topic counts exactly the
input, and so does the latest complaint-rate row per window and provider, and per window and
tenant, of the rates topic. At least once: no key counts less than its input (nothing lost), and
all keys together count more only by records the worker read again after the kill -9, which the
output topic holds twice as well."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaException, Producer
from worker_harness import (
    WorkerProcess,
    kill_one_of_two,
    latest_per_key,
    named_workers,
    produce,
    read_topic,
    topic_size,
    wait_until,
)

from streamer.config import Settings
from streamer.devkit.sample import SampleMessage
from streamer.worker.rollup import RollupStage

pytestmark = pytest.mark.timeout(240)

T0 = 1_790_000_040_000  # a minute boundary, epoch ms
RECORDS = 2400
TENANTS = ("acme", "globex", "initech")
POOLS = ("pool-a", "pool-b")
Key = tuple[int, str, str]  # window start, pool, tenant
RateKey = tuple[int, str, str]  # window start, dimension, value


def _scenario(seed: int) -> tuple[list[SampleMessage], dict[Key, Counter[str]]]:
    """Records over 8 one-minute windows × 2 pools × 3 tenants (48 keys), and every 30th a
    Gmail user's spam complaint (no pool), shuffled; and each key's record types."""
    rnd = random.Random(seed)
    records: list[SampleMessage] = []
    truth: dict[Key, Counter[str]] = {}
    for n in range(RECORDS):
        t = T0 + rnd.randrange(8 * 60_000)
        pool, tenant = rnd.choice(POOLS), rnd.choice(TENANTS)
        rtype = rnd.choice(("Bounce", "Delivery", "TransientFailure"))
        code = {"Bounce": 550, "Delivery": 250, "TransientFailure": 451}[rtype]
        if n % 30 == 0:
            rec, pool = _complaint(n, t, tenant), ""
            records.append(SampleMessage(f"msg-{n}".encode(), orjson.dumps(rec), [], "classify"))
            truth.setdefault((t - t % 60_000, pool, tenant), Counter())["Feedback"] += 1
            continue
        rec = {
            "type": rtype,
            "id": f"msg-{n}",  # the message id keys the record: a key's records spread
            "recipient": f"u{n}@example.com",
            "sender": "news@mail.example.net",
            "queue": f"{tenant}@example.com",
            "site": "gmail-smtp-in.l.google.com",
            "egress_pool": pool,
            "egress_source": "ip-1",
            "event_time": _rfc3339(t),
            "response": {"code": code, "enhanced_code": None, "content": "x", "command": None},
        }
        records.append(SampleMessage(f"msg-{n}".encode(), orjson.dumps(rec), [], "classify"))
        truth.setdefault((t - t % 60_000, pool, tenant), Counter())[rtype] += 1
    return records, truth


def _complaint(n: int, t: int, tenant: str) -> dict[str, object]:
    """KumoMTA's Feedback record of an abuse report about a message to a Gmail user."""
    trace = {"recipient": f"u{n}@gmail.com", "tenant": tenant}
    return {
        "type": "Feedback",
        "id": f"msg-{n}",
        "recipient": "fbl@mail.example.net",
        "sender": "reporter@google.com",
        "event_time": _rfc3339(t),
        "response": {"code": 250, "enhanced_code": None, "content": "", "command": None},
        "feedback_report": {"feedback_type": "abuse", "supplemental_trace": trace},
    }


def _rates_of(truth: dict[Key, Counter[str]]) -> dict[RateKey, tuple[int, int]]:
    """(delivered, complaints) per window and provider, and per window and tenant."""
    out: dict[RateKey, tuple[int, int]] = {}
    for (start, _, tenant), counts in truth.items():
        for key in ((start, "provider", "google"), (start, "tenant", tenant)):
            delivered, complained = out.get(key, (0, 0))
            out[key] = (delivered + counts["Delivery"], complained + counts["Feedback"])
    return out


def _rates(bootstrap: str, topic: str) -> dict[RateKey, tuple[int, int]]:
    """The latest row per key of the rates topic: (delivered, complaints)."""
    out: dict[RateKey, tuple[int, int]] = {}
    for key, value in latest_per_key(bootstrap, topic).items():
        row = orjson.loads(value or b"{}")
        start, dim, v = orjson.loads(key or b"[]")
        assert (row["window_start"], row["dimension"], row["value"]) == (start, dim, v)
        assert row["complaint_rate"] == (
            row["complained"] / row["delivered"] if row["delivered"] else None
        )
        out[start, dim, v] = (row["delivered"], row["complained"])
    return out


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _stats(bootstrap: str, topic: str) -> dict[Key, Counter[str]]:
    """The latest row per key of the stats topic, as an upserting sink holds it."""
    out: dict[Key, Counter[str]] = {}
    for key, value in latest_per_key(bootstrap, topic).items():
        row = orjson.loads(value or b"{}")
        start, provider, pool, source, tenant = orjson.loads(key or b"[]")
        assert (provider, source) == ("google", "ip-1" if pool else "")
        assert (row["window_start"], row["egress_pool"], row["tenant"]) == (start, pool, tenant)
        out[start, pool, tenant] = Counter(row["counts"])
    return out


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    # windows kept a minute of event time: shuffled records of older windows start them again
    # (a new serial); a flush every second: many partials per key
    env = {"STREAMER_STATS_RETENTION": "60", "STREAMER_STATS_FLUSH_INTERVAL": "1"}
    with named_workers(kafka_bootstrap, tmp_path, env) as start:
        yield start


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
@pytest.mark.long
def test_the_latest_row_per_key_counts_the_input(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    workers: Callable[..., WorkerProcess],
    mode: str,
) -> None:
    args = ("--exactly-once",) if mode == "exactly-once" else ()
    inp, out = new_topic(4), new_topic(4)
    stats = f"{inp}.stats"
    records, truth = _scenario(seed=24)
    truth_rates = _rates_of(truth)
    a, b = kill_one_of_two(kafka_bootstrap, workers, (inp, out), args, records, rate=1000)
    assert b.stop() == 0  # a graceful stop: its last partials, its stage's partitions move
    produce(kafka_bootstrap, inp, records[2 * (len(records) // 3) :])
    b = workers("b", inp, out, *args)

    def settled() -> bool:
        assert a.alive(), a.log()[-3000:]
        assert b.alive(), b.log()[-3000:]
        if topic_size(kafka_bootstrap, out) < len(records):
            return False
        got, rates = _stats(kafka_bootstrap, stats), _rates(kafka_bootstrap, f"{stats}.rates")
        if mode == "exactly-once":
            return got == truth and rates == truth_rates
        return _at_least(got, truth) and _at_least(rates, truth_rates)

    wait_until(settled, 120, "every key's count in the stats and rates topics", interval=1.0)
    got, rates = _stats(kafka_bootstrap, stats), _rates(kafka_bootstrap, f"{stats}.rates")
    outputs = len(read_topic(kafka_bootstrap, out))
    extra = sum(sum(c.values()) for c in got.values()) - len(records)
    if mode == "exactly-once":
        assert got == truth and outputs == len(records) and rates == truth_rates
    else:
        assert _at_least(got, truth) and _at_least(rates, truth_rates)  # nothing lost
        assert 0 <= extra <= outputs - len(records)  # only what was read again
    partials = topic_size(kafka_bootstrap, f"{stats}.partials")
    public = len(read_topic(kafka_bootstrap, stats))
    rate_writes = topic_size(kafka_bootstrap, f"{stats}.rates")
    state = topic_size(kafka_bootstrap, f"{stats}.state")
    print(
        f"\n{mode}: {len(records)} records, {len(truth)} keys (+{len(rates)} rate keys), "
        f"{partials} partials ({partials / len(records):.3f} per record), {public} stats "
        f"writes, {rate_writes} rate writes and {state} changelog writes "
        f"({(public + rate_writes + state) / len(records):.3f} per record), "
        f"{extra} counted twice"
    )
    assert a.stop() == 0 and b.stop() == 0


def _at_least(got: dict[Any, Any], truth: dict[Any, Any]) -> bool:
    """The same keys, none counting less (a tuple counts less if any of its counts does)."""
    if set(got) != set(truth):
        return False
    if all(isinstance(v, tuple) for v in truth.values()):
        return all(all(g >= t for g, t in zip(got[k], v, strict=True)) for k, v in truth.items())
    return all(got[k] >= v for k, v in truth.items())


def _partial(session: str, seq: int, bounces: int) -> bytes:
    return orjson.dumps(
        {
            "window_start": T0,
            "window_end": T0 + 60_000,
            "provider": "google",
            "egress_pool": "p",
            "egress_source": "s",
            "tenant": "acme",
            "counts": {"Bounce": bounces},
            "gaps": [],
            "final": False,
            "serial": 1,
            "session": session,
            "seq": seq,
        }
    )


def test_a_stage_restarted_restores_its_keys_and_skips_bad_partials(
    kafka_bootstrap: str, kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """The stage alone, in process: it sums what it reads, skips (and counts) a partial that
    does not decode, and a successor restores the key's instances from the changelog: a
    replayed partial changes nothing, a newer one replaces its instance's."""
    partials, state, public = new_topic(2), new_topic(2), new_topic(2)
    settings = kafka_settings.model_copy(
        update={
            "stats_topic": public,
            "stats_partials_topic": partials,
            "stats_state_topic": state,
            "group_id": f"g-{partials}",
        }
    )
    key = orjson.dumps([T0, "google", "p", "s", "acme"])

    def send(*values: bytes) -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        for v in values:
            p.produce(partials, v, key)
        assert p.flush(10) == 0

    def run_until(bounces: int) -> RollupStage:
        stage = RollupStage(settings, kafka_bootstrap, worker_id="w")
        stage.start()

        def done() -> bool:
            try:
                value = latest_per_key(kafka_bootstrap, public).get(key)
            except KafkaException:  # a new topic's leader not known yet (a loaded broker)
                return False
            return value is not None and orjson.loads(value)["counts"]["Bounce"] == bounces

        try:
            wait_until(done, 40, f"{bounces} bounces")
        finally:
            stage.stop()
        return stage

    send(_partial("a/1", 1, 2), b"not json", _partial("b/1", 1, 1))
    first = run_until(3)
    assert first.status()["bad_partials"] == 1 and first.error is None
    assert first.metrics.registry.get_sample_value("streamer_stats_partials_total") == 2
    send(_partial("a/1", 1, 2), _partial("a/1", 2, 5))  # a replay, then its instance's next
    second = run_until(6)
    assert second.status()["partials"] == 2 and second.status()["late"] == 0
    row = orjson.loads(latest_per_key(kafka_bootstrap, public)[key] or b"{}")
    assert row["counts"] == {"Bounce": 6} and "session" not in row
