"""Suppressions decided per recipient, on the real broker: several workers, each recipient's
records spread over the input partitions and arriving out of event-time order, a kill -9 and a
restart in between. The compacted suppressions topic ends with every recipient's event-time
truth: a live entry with the exact count and first/last seen, or no entry (a tombstone or no
write), in both delivery modes."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kumomta_records as kr
import orjson
import pytest
from confluent_kafka import Producer
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
from streamer.worker.suppressor import SuppressionStage

pytestmark = pytest.mark.timeout(200)

T0 = 1_790_000_000_000  # event times, epoch ms
RECIPIENTS = 40
SENDER = "news@Mail.Example.net"


def _record(n: int, recipient: str, t: int, hard: bool) -> SampleMessage:
    response = (
        {"code": 550, "enhanced_code": None, "content": f"user unknown #{n}", "command": None}
        if hard
        else {"code": 250, "enhanced_code": None, "content": "ok", "command": None}
    )
    rec = {
        "type": "Bounce" if hard else "Delivery",
        "id": f"msg-{n}",  # the message id keys the record: a recipient's records spread
        "recipient": recipient,
        "sender": SENDER,
        "queue": f"acme@{recipient.rpartition('@')[2]}",
        "site": "gmail-smtp-in.l.google.com",
        "event_time": _rfc3339(t),
        "response": response,
    }
    return SampleMessage(rec["id"].encode(), orjson.dumps(rec), [], "classify")


def _rfc3339(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def _scenario(seed: int) -> tuple[list[SampleMessage], dict[bytes, Any]]:
    """Records for RECIPIENTS addresses (hard bounces and deliveries at distinct times, a
    fifth delivery-only), shuffled; and each recipient's truth: the entry, or None."""
    rnd = random.Random(seed)
    records: list[SampleMessage] = []
    truth: dict[bytes, Any] = {}
    n = 0
    for i in range(RECIPIENTS):
        address = f"User{i}@Example.com"
        key = address.lower()
        kinds = (
            [False] * rnd.randint(1, 3)
            if i % 5 == 0
            else [rnd.random() < 0.6 for _ in range(rnd.randint(2, 7))]
        )
        times = rnd.sample(range(0, 600_000, 7), len(kinds))
        events = []
        for hard, dt in zip(kinds, times, strict=True):
            n += 1
            t = T0 + dt
            records.append(_record(n, address if n % 2 else address.upper(), t, hard))
            events.append((t, hard, n))
        delivered = max((t for t, hard, _ in events if not hard), default=None)
        episode = sorted(e for e in events if e[1] and (delivered is None or e[0] >= delivered))
        truth[key.encode()] = (
            None
            if not episode
            else {
                "recipient": key,
                "label": "InvalidRecipient",
                "response": f"550 user unknown #{episode[-1][2]}",
                "provider": "google",
                "tenant": "acme",
                "sender_domain": "mail.example.net",
                "first_seen": episode[0][0],
                "last_seen": episode[-1][0],
                "count": len(episode),
                "reason": "hard-bounce",
                "reasons": ["hard-bounce"],
            }
        )
    rnd.shuffle(records)
    return records, truth


def _public(value: bytes | None) -> Any:
    if value is None:
        return None
    doc = orjson.loads(value)
    assert doc.pop("rule")["label"] == "InvalidRecipient"
    return doc


@pytest.fixture
def workers(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    with named_workers(kafka_bootstrap, tmp_path) as start:
        yield start


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
@pytest.mark.long
def test_every_recipient_ends_with_its_event_time_truth(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    workers: Callable[..., WorkerProcess],
    mode: str,
) -> None:
    args = ("--exactly-once",) if mode == "exactly-once" else ()
    inp, out = new_topic(4), new_topic(4)
    supp = f"{inp}.suppressions"
    records, truth = _scenario(seed=24)
    a, b = kill_one_of_two(kafka_bootstrap, workers, (inp, out), args, records, rate=60)
    produce(kafka_bootstrap, inp, records[2 * (len(records) // 3) :])

    def settled() -> bool:
        assert a.alive(), a.log()[-3000:]
        assert b.alive(), b.log()[-3000:]
        latest = latest_per_key(kafka_bootstrap, supp)
        return all(_public(latest.get(k)) == v for k, v in truth.items())

    wait_until(settled, 90, "every recipient's truth in the suppressions topic", interval=1.0)
    latest = latest_per_key(kafka_bootstrap, supp)
    assert {k: _public(latest.get(k)) for k in truth} == truth
    live = sum(v is not None for v in truth.values())
    assert 5 < live < RECIPIENTS - 5  # the scenario has both outcomes
    # delivery-only recipients (every fifth) never cost a public write
    never = {f"user{i}@example.com".encode() for i in range(0, RECIPIENTS, 5)}
    assert not never & set(latest)
    writes = len(read_topic(kafka_bootstrap, supp))
    events = topic_size(kafka_bootstrap, f"{supp}.events")
    print(
        f"\n{mode}: {len(records)} records, {events} suppression events, {writes} public writes"
        f" for {len(truth)} recipients ({live} suppressed)"
    )
    assert a.stop() == 0 and b.stop() == 0


def test_a_changelog_partitioned_unlike_the_events_stops_the_stage(
    kafka_bootstrap: str, kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """A recipient's state goes to the partition number of its events: different partition
    counts are refused at start, in one line, and the worker is told to stop."""
    events, state = new_topic(4), new_topic(2)
    settings = kafka_settings.model_copy(
        update={"suppression_events_topic": events, "suppression_state_topic": state}
    )
    failed = threading.Event()
    stage = SuppressionStage(settings, kafka_bootstrap, worker_id="w", on_failure=failed.set)
    stage.start()
    assert failed.wait(30)
    stage.stop()
    assert stage.error == (
        f"the suppression topics need as many partitions each ({events}: 4, {state}: 2)"
    )


def _event(t: int, p: int, o: int, label: str | None = None) -> bytes:
    doc: dict[str, Any] = {"p": p, "o": o, "t": t}
    if label is not None:
        doc["h"] = {"label": label, "provider": "google"}
    return orjson.dumps(doc)


def test_a_stage_restarted_restores_its_recipients_and_skips_bad_events(
    kafka_bootstrap: str, kafka_settings: Settings, new_topic: Callable[..., str]
) -> None:
    """The stage alone, in process: it folds what it reads, skips (and counts) an event that
    does not decode, and a successor restores the recipients from the changelog: a replayed
    event counts once, a later one on top of the restored count."""
    events, state, public = new_topic(2), new_topic(2), new_topic(2)
    settings = kafka_settings.model_copy(
        update={
            "suppressions_topic": public,
            "suppression_events_topic": events,
            "suppression_state_topic": state,
            "group_id": f"g-{events}",
            "suppression_replay": 0,  # only the changelog brings the state back
        }
    )
    key = b"bob@example.com"

    def send(*values: bytes | None) -> None:
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        for v in values:
            p.produce(events, v, key)
        assert p.flush(10) == 0

    def run_until(count: int) -> SuppressionStage:
        stage = SuppressionStage(settings, kafka_bootstrap, worker_id="w")
        stage.start()

        def done() -> bool:
            value = latest_per_key(kafka_bootstrap, public).get(key)
            return value is not None and orjson.loads(value)["count"] == count

        wait_until(done, 40, f"count {count}")
        stage.stop()
        return stage

    send(_event(T0, 0, 1, "A"), b"not json", _event(T0 + 5, 1, 9, "B"))
    first = run_until(2)
    assert first.status()["bad_events"] == 1 and first.error is None
    assert first.metrics.registry.get_sample_value("streamer_suppression_events_total") == 2
    send(_event(T0 + 5, 1, 9, "B"), _event(T0 + 9, 0, 4, "C"))  # a replay, then a new one
    second = run_until(3)
    doc = orjson.loads(latest_per_key(kafka_bootstrap, public)[key] or b"{}")
    assert (doc["first_seen"], doc["last_seen"], doc["label"]) == (T0, T0 + 9, "C")
    assert second.status()["events"] == 2


def _kumo(record: dict[str, Any]) -> SampleMessage:
    return SampleMessage(record["id"].encode(), orjson.dumps(record), [], "classify")


def _cli(bootstrap: str, inp: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STREAMER_SUPPRESSIONS_TOPIC": f"{inp}.suppressions"}
    for var in ("STREAMER_CONFIG", "KAFKA_BOOTSTRAP", "STREAMER_BOOTSTRAP"):
        env.pop(var, None)
    cmd = [sys.executable, "-c", "from streamer.cli import main; main()", *args]
    return subprocess.run(
        [*cmd, "--bootstrap", bootstrap], env=env, capture_output=True, text=True, timeout=60
    )


def test_complaints_trusted_oobs_and_manual_suppressions_from_kumomta_records(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers: Callable[..., WorkerProcess]
) -> None:
    """KumoMTA's OOB and Feedback records (tests/kumomta_records.py) through a real worker: an
    OOB after a Delivery suppresses (hard-bounce), a forged one for an address never mailed
    does not (counted untrusted); an abuse report suppresses the complainer (complaint) and a
    later Delivery leaves it; a not-spam report suppresses nobody; ``streamer suppressions``
    adds (manual) and removes (a tombstone, whatever the reason)."""
    inp, out = new_topic(1), new_topic(1)  # one partition: the records are read in this order
    supp = f"{inp}.suppressions"
    records = [
        kr.delivered(1, "ann@gmail.com"),
        kr.oob(2, "ann@gmail.com", meta={"tenant": "acme"}),
        kr.oob(3, "never@gmail.com"),  # a DSN about mail we never sent
        kr.delivered(4, "cat@yahoo.com"),
        kr.feedback(5, "cat@yahoo.com", "abuse", tenant="acme"),
        kr.delivered(6, "cat@yahoo.com"),
        kr.feedback(7, "dee@yahoo.com", "not-spam"),
    ]
    w = workers("w", inp, out)
    w.wait_assigned()
    produce(kafka_bootstrap, inp, [_kumo(r) for r in records])
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= len(records), 60, "every record")

    def entries() -> dict[bytes | None, Any]:
        latest = latest_per_key(kafka_bootstrap, supp)
        return {k: None if v is None else orjson.loads(v) for k, v in latest.items()}

    def folded() -> bool:
        assert w.alive(), w.log()[-3000:]
        return {b"ann@gmail.com", b"cat@yahoo.com"} <= set(entries()) and (
            w.metric("streamer_suppression_untrusted_oob_total") == 1
        )

    wait_until(folded, 60, "the OOB, the complaint and the forged OOB folded")
    found = entries()
    ann, cat = found[b"ann@gmail.com"], found[b"cat@yahoo.com"]
    assert (ann["reason"], ann["label"], ann["tenant"]) == (
        "hard-bounce",
        "InvalidRecipient",
        "acme",
    )
    assert ann["response"] == "550 5.1.1 5.1.1 <ann@gmail.com>: user unknown"  # KumoMTA's line
    assert (cat["reason"], cat["feedback_type"], cat["tenant"]) == ("complaint", "abuse", "acme")
    assert cat["reasons"] == ["complaint"]  # the Delivery after it lifted nothing
    assert set(found) == {b"ann@gmail.com", b"cat@yahoo.com"}  # not never@, not dee@
    assert "untrusted OOB held" in w.log()

    added = _cli(
        kafka_bootstrap, inp, "suppressions", "add", "<Eve@Example.NET>", "--reason-text", "asked"
    )
    assert added.returncode == 0, added.stderr
    assert (
        added.stdout
        == f"1 suppression sent to {supp}.events; the suppression stage writes {supp}\n"
    )
    removed = _cli(kafka_bootstrap, inp, "suppressions", "remove", "cat@yahoo.com")
    assert removed.returncode == 0, removed.stderr

    def manual_done() -> bool:
        latest = entries()
        return b"eve@example.net" in latest and latest.get(b"cat@yahoo.com", 1) is None

    wait_until(manual_done, 60, "the manual add and the remove folded")
    eve = entries()[b"eve@example.net"]
    assert (eve["reason"], eve["note"], eve["label"]) == ("manual", "asked", None)
    bad = _cli(kafka_bootstrap, inp, "suppressions", "add", "nobody")
    assert (bad.returncode, bad.stderr) == (2, "suppressions: not an email address: 'nobody'\n")
    assert w.stop() == 0
