"""Analytics through a real worker and a real broker: the stats topic counts every record,
suppressions are written and taken back, the compacted topics are compacted."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]
from worker_harness import (
    RULES_V1,
    WorkerProcess,
    latest_per_key,
    produce,
    read_topic,
    stats_totals,
    topic_size,
    uncommitted,
    wait_until,
)

from streamer.analytics.windows import event_time_ms
from streamer.config import load_settings
from streamer.devkit.broker import free_port
from streamer.devkit.sample import SampleMessage, load_bundled_sample
from streamer.kafka.clients import admin_client
from streamer.records import effective_type

pytestmark = pytest.mark.timeout(150)
STREAMER = [sys.executable, "-c", "from streamer.cli import main; main()"]

#: A row of the stats topic (summed per window and dimensions by the rollup stage).
ROW_FIELDS = {
    "window_start", "window_end", "provider", "egress_pool", "egress_source", "tenant",
    "counts", "labels", "categories", "complaints", "feedback", "gaps", "final",
}  # fmt: skip


@pytest.fixture
def worker(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    started: list[WorkerProcess] = []

    def start(inp: str, out: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        w = WorkerProcess(
            kafka_bootstrap,
            tmp_path,
            name=f"w{len(started)}",
            input_topic=inp,
            output_topic=out,
            group=f"g-{inp}",
            rules=rules,
            args=("--log-format", "text", *args),
            env=env,
        ).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.cleanup()


def _finish(bootstrap: str, w: WorkerProcess, out: str, n: int) -> None:
    def done() -> bool:
        assert w.alive(), w.log()[-3000:]
        return topic_size(bootstrap, out) >= n and w.metric("streamer_in_flight") == 0

    wait_until(done, 60, f"{n} outputs, nothing in flight", interval=0.3)
    assert w.stop() == 0  # a graceful stop publishes the last stats update


def _types(sent: list[SampleMessage]) -> Counter[str]:
    return Counter(effective_type(orjson.loads(m.value)) for m in sent)


@pytest.mark.long
def test_settled_records_never_hold_back_fetching_and_bring_the_stats_update_forward(
    kafka_bootstrap: str, new_topic: Callable[..., str], worker
) -> None:
    # A counted record whose outputs are acknowledged waits only for the stats update that
    # counts it before its offset may be committed (settled): it does not count against
    # back_pressure (200), so all 1,000 outputs come long before the minute between updates;
    # settled records have their own bound (8 x back_pressure), and reaching half of it (800)
    # brings the update forward: only that lets the group commit 800 records within the minute.
    inp, out = new_topic(2), new_topic(2)
    sent = load_bundled_sample()
    w = worker(
        inp,
        out,
        "--back-pressure",
        "200",
        "--batch-size",
        "50",
        env={"STREAMER_STATS_FLUSH_INTERVAL": "60"},
    )
    w.wait_assigned(2)
    produce(kafka_bootstrap, inp, sent)

    def done() -> bool:
        assert w.alive(), w.log()[-3000:]
        return topic_size(kafka_bootstrap, out) >= len(sent)

    wait_until(done, 40, f"{len(sent)} outputs", interval=0.3)
    wait_until(
        lambda: uncommitted(kafka_bootstrap, f"g-{inp}", inp) <= len(sent) - 800,
        30,
        "the early stats update to release 800 records for the commit",
        interval=0.3,
    )
    m = w.metrics()
    assert m["streamer_in_flight_max"] <= 200 + 50
    assert m["streamer_backpressure_pauses_total"] == 0
    assert w.stop() == 0
    types, _ = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert types == _types(sent)


@pytest.mark.parametrize("mode", ["--at-least-once", "--exactly-once"])
@pytest.mark.long
def test_bundled_sample_stats_count_every_record_and_label(
    kafka_bootstrap: str, new_topic: Callable[..., str], worker, mode: str
) -> None:
    inp, out = new_topic(4), new_topic(4)
    sent = load_bundled_sample()
    w = worker(inp, out, mode)
    w.wait_assigned(4)
    produce(kafka_bootstrap, inp, sent)
    _finish(kafka_bootstrap, w, out, len(sent))

    outputs = [orjson.loads(o.value or b"{}") for o in read_topic(kafka_bootstrap, out)]
    types, labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert types == _types(sent)
    assert labels == Counter(o["bounce_classification"] for o in outputs if "classification" in o)
    rows = [
        orjson.loads(v or b"{}") for v in latest_per_key(kafka_bootstrap, f"{inp}.stats").values()
    ]
    assert rows and all(set(r) == ROW_FIELDS for r in rows)
    assert all(r["window_end"] - r["window_start"] == 60_000 for r in rows)
    complaints, feedback = Counter[str](), Counter[str]()
    for r in rows:
        complaints.update(r["complaints"])
        feedback.update(r["feedback"])
    assert sum(feedback.values()) == _types(sent)["Feedback"]  # every report, by type
    # complaints: the reports whose category is complaint (the outputs say which)
    categories = Counter(
        o["classification"]["category"] for o in outputs if o.get("type") == "Feedback"
    )
    assert sum(complaints.values()) == categories["complaint"] < sum(feedback.values())
    # every classified output says its category and provider
    classified = [o["classification"] for o in outputs if "classification" in o]
    assert all(c["category"] and c["provider"] for c in classified)
    assert {c["provider"] for c in classified} >= {"google", "microsoft", "yahoo"}
    # `streamer gaps --topic` reads the rule gaps the worker counted
    gaps = subprocess.run(
        [*STREAMER, "gaps", "--topic", f"{inp}.stats", "-b", kafka_bootstrap, "--json"],
        capture_output=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "STREAMER_CONFIG"},
    )
    assert gaps.returncode == 0, gaps.stderr
    doc = orjson.loads(gaps.stdout)
    # rule gaps: Uncategorized responses and those only a reply-code fallback classified
    reply_code_only = sum(1 for c in classified if c["evidence"] == "reply-code")
    assert doc["gaps_total"] == labels["Uncategorized"] + reply_code_only
    assert labels["Uncategorized"] > 0
    assert doc["gaps"] and all(g["count"] > 0 and g["example"] for g in doc["gaps"])


def test_replaying_a_local_log_with_log_hook_records_keeps_every_suppression(
    kafka_bootstrap: str, new_topic: Callable[..., str], worker, tmp_path: Path
) -> None:
    """A folder of KumoMTA's local logs with a log hook configured (``kumomta_records``): each
    hard bounce is followed by the hook's Delivery of it, naming the bounced recipient. Replayed
    with ``streamer produce`` through a worker, every suppression stays (no tombstone)."""
    import kumomta_records as kr
    import zstandard

    inp, out = new_topic(1), new_topic(1)  # one partition: the hook's deliveries come after
    logs = tmp_path / "logs"
    logs.mkdir()
    records = kr.local_log_with_a_hook()
    lines = [orjson.dumps(r) + b"\n" for r in records]
    (logs / "20261206-201505.1").write_bytes(b"".join(lines[:10]))
    packed = zstandard.ZstdCompressor().compress(b"".join(lines[10:]))
    (logs / "20261206-201605.2").write_bytes(packed)
    w = worker(inp, out)
    w.wait_assigned(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    replay = subprocess.run(
        [*STREAMER, "produce", str(logs), "--topic", inp, "-b", kafka_bootstrap],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert replay.returncode == 0, replay.stderr
    assert f"{len(records)} delivered, 0 failed" in replay.stdout
    _finish(kafka_bootstrap, w, out, len(records))

    history: dict[bytes | None, list[bytes | None]] = {}
    for r in read_topic(kafka_bootstrap, f"{inp}.suppressions"):
        history.setdefault(r.key, []).append(r.value)
    assert set(history) == {b"gone1@gmail.com", b"gone2@gmail.com"}
    assert all(len(values) == 1 and values[0] for values in history.values())  # no tombstone
    # the hook's records went out as they came, and the stats count them apart
    outputs = read_topic(kafka_bootstrap, out)
    assert sorted(o.value for o in outputs if b'"LogRecord"' in (o.value or b"")) == sorted(
        line.rstrip(b"\n") for line in lines if b'"LogRecord"' in line
    )
    types, _labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert types["Delivery"] == 3 and types["log_hook"] == 10


def test_hard_bounce_suppresses_and_a_later_delivery_takes_it_back(
    kafka_bootstrap: str, new_topic: Callable[..., str], worker
) -> None:
    inp, out = new_topic(1), new_topic(1)  # one partition: the delivery comes after the bounce

    def record(
        rtype: str, recipient: str, n: int, code: int = 550, text: str = ""
    ) -> SampleMessage:
        rec = {
            "type": rtype,
            "id": f"id-{n}",
            "recipient": recipient,
            "sender": "news@example.net",
            "site": "gmail-smtp-in.l.google.com",
            "timestamp": 1_790_000_000 + n,
            "response": {"code": code, "enhanced_code": None, "content": text, "command": None},
        }
        return SampleMessage(rec["id"], orjson.dumps(rec), [], "classify")  # type: ignore[arg-type]

    sent = [
        record("Bounce", "Gone@Example.com", 1, text="user unknown"),
        record("Bounce", "gone@example.com", 2, text="no such user here"),
        record("Bounce", "full@example.com", 3, code=452, text="mailbox full"),  # soft: none
        record("Bounce", "stays@example.com", 4, text="user unknown"),
        record("Delivery", "GONE@example.com", 5, code=250, text="ok"),
        record("Bounce", "Stays@example.com", 6, text="no such user here"),
        record("Delivery", "never@example.com", 7, code=250, text="ok"),
    ]
    w = worker(inp, out)
    w.wait_assigned(1)
    topic = f"{inp}.suppressions"
    # the bounces first, then the rest: a batch's deliveries are folded before its bounces
    # (they vouch for its OOBs), so in one batch the older bounces of gone@ would be stale
    # at once and never written
    produce(kafka_bootstrap, inp, sent[:4])

    def suppressed() -> bool:
        latest = latest_per_key(kafka_bootstrap, topic)
        return latest.get(b"stays@example.com") is not None and bool(
            latest.get(b"gone@example.com")
        )

    wait_until(suppressed, 30, "the suppression stage's writes")
    produce(kafka_bootstrap, inp, sent[4:])

    def lifted() -> bool:
        latest = latest_per_key(kafka_bootstrap, topic)
        return b"gone@example.com" in latest and latest[b"gone@example.com"] is None

    wait_until(lifted, 30, "gone@'s tombstone")
    _finish(kafka_bootstrap, w, out, len(sent))
    latest = latest_per_key(kafka_bootstrap, topic)
    # the never-suppressed address cost no write; the lifted one is a tombstone
    assert set(latest) == {b"gone@example.com", b"stays@example.com"}
    assert latest[b"gone@example.com"] is None
    entry = orjson.loads(latest[b"stays@example.com"] or b"{}")
    assert entry == {
        "recipient": "stays@example.com",
        "label": "InvalidRecipient",
        "rule": entry["rule"],
        "response": "550 no such user here",
        "provider": "google",
        "tenant": None,
        "sender_domain": "example.net",
        "first_seen": 1_790_000_004_000,
        "last_seen": 1_790_000_006_000,
        "count": 2,
        "reason": "hard-bounce",
        "reasons": ["hard-bounce"],
    }
    assert entry["rule"]["label"] == "InvalidRecipient"
    # the analytics topics and the stage's changelog keep the latest record per key
    settings = load_settings(bootstrap=kafka_bootstrap)
    admin = admin_client(settings, kafka_bootstrap)
    for name in (topic, f"{inp}.stats", f"{topic}.state", f"{inp}.stats.state"):
        res = ConfigResource(ConfigResource.Type.TOPIC, name)
        config = admin.describe_configs([res])[res].result(timeout=10)
        assert config["cleanup.policy"].value == "compact"


def test_startup_line_stats_endpoint_and_final_rows(
    kafka_bootstrap: str, new_topic: Callable[..., str], worker
) -> None:
    """The start-up line names the ports the worker really listens on; ``/stats`` serves the
    rows it holds (the session's, summing to what it consumed), which it published as partials
    under its session; a window's latest row is ``final`` exactly when event time passed its end
    plus ``stats_grace``."""
    inp, out = new_topic(2), new_topic(2)
    sent = load_bundled_sample()
    w = worker(inp, out, "--web-port", str(free_port()))
    metrics_port, web_port = w.wait_started()
    line = next(x for x in w.log().splitlines() if "worker starting" in x)
    for field in (f"group=g-{inp}", f"input={inp}", f"output={out}", "exactly_once=False"):
        assert field in line.split(), line
    assert "analytics=on" in line.split(), line
    assert metrics_port > 0 and web_port > 0
    w.wait_assigned(2)
    produce(kafka_bootstrap, inp, sent)
    wait_until(
        lambda: sum(stats_totals(kafka_bootstrap, f"{inp}.stats")[0].values()) == len(sent),
        60,
        "the stats rows to count every record",
        interval=0.5,
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/stats", timeout=10) as resp:
        held = orjson.loads(resp.read())
    _finish(kafka_bootstrap, w, out, len(sent))

    rows = held["rows"]
    assert sum(sum(r["counts"].values()) for r in rows) == len(sent)
    assert all(set(r) == ROW_FIELDS | {"serial"} for r in rows)
    partials = [
        orjson.loads(r.value or b"{}") for r in read_topic(kafka_bootstrap, f"{inp}.stats.partials")
    ]
    assert {r["session"] for r in partials} == {held["session"]}
    published = [
        orjson.loads(v or b"{}") for v in latest_per_key(kafka_bootstrap, f"{inp}.stats").values()
    ]
    assert all(set(r) == ROW_FIELDS for r in published)
    mark = max(event_time_ms(orjson.loads(m.value)) or 0 for m in sent)
    grace_ms = load_settings().stats_grace * 1000
    wrong = [r for r in published if r["final"] != (r["window_end"] + grace_ms <= mark)]
    assert not wrong, wrong[0]
    assert {r["final"] for r in published} == {True, False}
