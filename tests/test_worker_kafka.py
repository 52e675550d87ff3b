"""``streamer worker`` as a real subprocess against the real local Kafka broker.

Every test starts its own worker process(es) on fresh topics and checks what came out of Kafka,
record by record: routing and labels, keys and headers, at-least-once across rebalances and
crashes, back-pressure, hot reload. Expectations are computed in-process with the classifier.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from system_tools import lacking
from worker_harness import (
    RULES_V1,
    TopicRecord,
    WorkerProcess,
    open_transactions,
    produce,
    read_topic,
    stable_offsets,
    stats_totals,
    stop_story,
    topic_size,
    uncommitted,
    wait_until,
)

from streamer import native
from streamer.classifier import Classifier
from streamer.deadletter import DLQ_DETAIL, DLQ_REASON, DLQ_SOURCE_OFFSET, DLQ_SOURCE_TOPIC
from streamer.devkit.sample import SampleMessage, generate, record_identity
from streamer.kafka.sink import TRANSACTION_TIMEOUT_MS
from streamer.records import effective_type, enrich
from streamer.worker.reload import CHECK_INTERVAL_S

pytestmark = pytest.mark.timeout(150)

MAX_BYTES = 16_384  # the too-large samples exceed this (and stay far below Kafka's own limit)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_V1)
    return path


@pytest.fixture
def workers(
    kafka_bootstrap: str, tmp_path: Path, rules: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(
        name: str,
        *,
        inp: str,
        out: str,
        group: str,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        w = WorkerProcess(
            kafka_bootstrap,
            tmp_path,
            name=name,
            input_topic=inp,
            output_topic=out,
            group=group,
            rules=rules,
            args=("--log-format", "text", *args),
            env={"STREAMER_MAX_MESSAGE_BYTES": str(MAX_BYTES), **(env or {})},
        ).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.cleanup()


def _identity(value: bytes | None) -> tuple[str, str, int] | None:
    try:
        rec = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    return record_identity(rec) if isinstance(rec, dict) and "id" in rec else None


def _wait_for_outputs(
    bootstrap: str, topics: list[str], n: int, worker: WorkerProcess, timeout: float
) -> None:
    def done() -> bool:
        assert worker.alive(), f"{worker.name} exited:\n{worker.log()[-3000:]}"
        return sum(topic_size(bootstrap, t) for t in topics) >= n

    wait_until(done, timeout, f"{n} outputs in {topics}", interval=0.5)


def _check_every_input_came_out(
    sent: list[SampleMessage], out: list[TopicRecord], dlq: list[TopicRecord]
) -> Counter[tuple[str, str, int]]:
    """Each well-formed input is in the output (returns how many times each came out)."""
    seen: Counter[tuple[str, str, int]] = Counter()
    for m in out:
        ident = _identity(m.value)
        assert ident is not None
        seen[ident] += 1
    missing = [
        m for m in sent if not m.kind.startswith("malformed") and seen[_identity(m.value)] == 0
    ]
    assert not missing, f"{len(missing)} inputs never came out, e.g. {missing[0].value[:200]!r}"
    bad_sent = Counter(m.value for m in sent if m.kind.startswith("malformed"))
    bad_out = Counter(m.value for m in dlq)
    lost = bad_sent - bad_out
    assert not lost, (
        f"{lost.total()} of {bad_sent.total()} malformed inputs missing from the dead-letter "
        f"topic ({len(dlq)} read), e.g. {next(iter(lost))[:120]!r}"
    )
    return seen


def _assert_each_key_keeps_its_order(sent: list[SampleMessage], out: list[TopicRecord]) -> None:
    """Records of one key (one input partition) come out on one partition, in the order they
    went in (a run where each record came out once). An empty key (a Rejection's ``id`` is
    "") promises no order: Kafka's partitioners spread empty keys like missing ones."""
    want: dict[bytes | None, list[tuple[str, str, int] | None]] = {}
    for m in sent:
        if not m.kind.startswith("malformed") and m.key:
            want.setdefault(m.key, []).append(_identity(m.value))
    got: dict[bytes | None, list[tuple[str, str, int] | None]] = {}
    partitions: dict[bytes | None, set[int]] = {}
    for o in sorted(out, key=lambda o: (o.partition, o.offset)):
        if not o.key:
            continue
        got.setdefault(o.key, []).append(_identity(o.value))
        partitions.setdefault(o.key, set()).add(o.partition)
    assert all(len(p) == 1 for p in partitions.values())
    disordered = [k for k in want if got.get(k) != want[k]]
    assert not disordered, f"{len(disordered)} keys out of order, e.g. {disordered[0]!r}"


@pytest.mark.parametrize(
    ("analytics", "record_path"),
    # the native path (the default, analytics on) and the Python one (STREAMER_NATIVE=0)
    [("true", "native"), ("false", "python")],
)
def test_mixed_records_classified_passed_and_dead_lettered(
    kafka_bootstrap: str,
    new_topic: Callable[..., str],
    workers,
    rules: Path,
    analytics: str,
    record_path: str,
) -> None:
    if record_path == "native" and not native.AVAILABLE:
        lacking("streamer._native is not built (no cargo at install time): see README")
    inp, out = new_topic(4), new_topic(4)
    sent = list(generate(10_000, seed=11, malformed_fraction=0.03, max_message_bytes=MAX_BYTES))
    produce(kafka_bootstrap, inp, sent)
    env = {"STREAMER_ANALYTICS": analytics}
    if record_path == "python":
        env[native.NATIVE_ENV] = "0"
    w = workers("w-mixed", inp=inp, out=out, group=f"g-{inp}", env=env)
    n_bad = sum(m.kind.startswith("malformed") for m in sent)
    _wait_for_outputs(kafka_bootstrap, [out, f"{inp}.dlq"], len(sent), w, timeout=90)
    assert w.stop() == 0
    assert f"record_path={record_path}" in w.log()

    outputs = read_topic(kafka_bootstrap, out)
    dlq = read_topic(kafka_bootstrap, f"{inp}.dlq")
    assert len(outputs) == len(sent) - n_bad, "every good input exactly once (clean run)"
    assert len(dlq) == n_bad
    _assert_each_key_keeps_its_order(sent, outputs)

    expect = Classifier.from_files([rules])
    by_identity = {_identity(m.value): m for m in sent if not m.kind.startswith("malformed")}
    labels: Counter[str] = Counter()
    for o in outputs:
        src = by_identity[_identity(o.value)]
        assert o.key == src.key
        assert o.headers == src.headers
        rec = orjson.loads(o.value)
        if src.kind == "classify":
            want = enrich(dict(rec), expect)["bounce_classification"]
            assert rec["bounce_classification"] == want
            assert rec["classification"]["rules_version"] == expect.version
            labels[want] += 1
        else:
            assert src.kind == "pass"
            assert o.value == src.value, "other record types pass through byte for byte"
    assert {"InvalidRecipient", "QuotaIssues", "SpamBlock", "Uncategorized"} <= set(labels)

    sent_bad = {(m.key, m.value): m for m in sent if m.kind.startswith("malformed")}
    for d in dlq:
        src = sent_bad[d.key, d.value]  # key kept, value unchanged
        assert d.header(DLQ_REASON) == src.kind.split(":", 1)[1].encode()
        assert d.header(DLQ_SOURCE_TOPIC) == inp.encode()
        assert d.header(DLQ_SOURCE_OFFSET) is not None
        assert d.headers[: len(src.headers)] == src.headers
    reasons = Counter(d.header(DLQ_REASON) for d in dlq)
    assert len(reasons) >= 6, reasons
    print(f"\nlabels: {dict(labels)}\ndead letters: {dict(reasons)}")


@pytest.mark.long
def test_two_workers_share_partitions_and_take_over(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    inp, out = new_topic(6), new_topic(6)
    group = f"g-{inp}"
    a = workers("w-a", inp=inp, out=out, group=group)
    b = workers("w-b", inp=inp, out=out, group=group)

    def shared() -> bool:
        na = a.metric("streamer_assigned_partitions")
        nb = b.metric("streamer_assigned_partitions")
        return na > 0 and nb > 0 and na + nb == 6

    wait_until(shared, 60, "both workers to share the 6 partitions")
    records = list(generate(18_000, seed=22))
    first, second = records[:6_000], records[6_000:]
    produce(kafka_bootstrap, inp, first)
    _wait_for_outputs(kafka_bootstrap, [out], len(first), a, timeout=60)
    in_a = sum(v for k, v in a.metrics().items() if k.startswith("streamer_events_in_total"))
    in_b = sum(v for k, v in b.metrics().items() if k.startswith("streamer_events_in_total"))
    assert in_a > 0 and in_b > 0 and in_a + in_b >= len(first), (in_a, in_b)

    # stop b while records arrive: a takes over its partitions, nothing is lost
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, inp, second), kwargs={"rate": 6_000}
    )
    feeder.start()
    wait_until(lambda: topic_size(kafka_bootstrap, out) > len(first), 30, "the second part")
    assert b.stop() == 0
    assert "partitions revoked" in b.log()
    a.wait_assigned(6, timeout=60)
    feeder.join(30)
    _wait_for_outputs(kafka_bootstrap, [out], len(records), a, timeout=60)
    assert a.stop() == 0

    outputs = read_topic(kafka_bootstrap, out)
    seen = _check_every_input_came_out(records, outputs, [])
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    print(
        f"\nworker a {in_a:.0f}, b {in_b:.0f} records before the stop; "
        f"{len(outputs)} outputs for {len(records)} inputs; duplicates {dupes}"
    )
    # revoked partitions are drained and committed before they move: no record twice
    assert dupes == 0


@pytest.mark.long
def test_kill9_then_restart_loses_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    inp, out = new_topic(4), new_topic(4)
    group = f"g-{inp}"
    sent = list(generate(20_000, seed=31))
    # The stats rollup holds every key of these records (1.4 hours of event time, a second
    # instance for many keys after the crash): with the default bound (stats_rollup_rows, from
    # the memory budget) it retires the oldest windows, and partials for a retired window are
    # not folded (docs/analytics.md), which is that bound's promise, not this test's.
    roomy = {"STREAMER_STATS_ROLLUP_ROWS": "60000"}
    w1 = workers("w-crash", inp=inp, out=out, group=group, env=roomy)
    w1.wait_assigned(4)
    # records arrive at a steady rate, so the crash lands mid-stream
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, inp, sent), kwargs={"rate": 5_000}
    )
    feeder.start()
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= 6_000, 30, "a third of the output")
    w1.kill9()
    at_kill = topic_size(kafka_bootstrap, out)
    w2 = workers("w-restart", inp=inp, out=out, group=group, env=roomy)
    feeder.join(30)
    assert at_kill < len(sent), "the crash should land mid-stream"
    _wait_for_outputs(kafka_bootstrap, [out], len(sent), w2, timeout=90)
    # re-read records come out again (at least once), so the count can be reached before the
    # last inputs are worked: wait until the group has committed every input (a commit
    # follows its outputs' delivery)
    wait_until(lambda: uncommitted(kafka_bootstrap, group, inp) == 0, 90, "every input done")
    wait_until(lambda: w2.metric("streamer_in_flight") == 0, 20, "in-flight to drain")
    # the stats stage folds its partials behind the records: wait until it counted each type
    # (a stop drains it for 5 s at most, the rest is its next owner's, and none comes here)
    want = _types_sent(sent)

    short: dict[str, tuple[int, int]] = {}

    def counted() -> bool:
        types, _labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
        short.clear()
        short.update({t: (types[t], n) for t, n in want.items() if types[t] < n})
        return not short

    try:
        wait_until(counted, 60, "the stats to count every record", interval=1.0)
    except AssertionError as exc:  # say which counts fell short, and what the worker says
        story = stop_story(w2.log())
        raise AssertionError(f"{exc}: (counted, sent) {short}\n{story}") from None
    assert w2.metric("streamer_stats_late_partials_total") == 0  # every partial was folded
    assert w2.stop() == 0

    outputs = read_topic(kafka_bootstrap, out)
    seen = _check_every_input_came_out(sent, outputs, [])
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    print(
        f"\nkilled at {at_kill} outputs; {len(outputs)} outputs for {len(sent)} inputs; "
        f"duplicates {dupes} (re-processed after the crash: consumed, never committed)"
    )
    assert len(outputs) == len(sent) + dupes
    # the windowed stats lost no count either: never fewer, extra only from the replay
    types, _labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert all(types[t] >= n for t, n in want.items()), (types, want)
    extra = sum(types.values()) - sum(want.values())
    print(f"stats: {sum(types.values())} records counted for {len(sent)}, {extra} from replays")
    assert extra <= dupes


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.long
def test_sigint_and_sigterm_stop_gracefully_mid_stream(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers, sig: signal.Signals
) -> None:
    """Stop fetching, finish in-flight records, commit, leave the group, exit 0: the worker
    that comes next goes on from there, and every record comes out once, in its key's order."""
    inp, out = new_topic(4), new_topic(4)
    group = f"g-{inp}"
    sent: list[SampleMessage] = []
    signalled = threading.Event()

    def stream() -> Iterator[SampleMessage]:
        """Records until the stop was signalled and 2,000 after it (at most 40,000: 10 s), so
        the stop lands mid-stream however long the worker takes to its first outputs."""
        after = 0
        for m in generate(40_000, seed=51):
            sent.append(m)
            yield m
            after += signalled.is_set()
            if after >= 2_000:
                return

    w1 = workers("w-stop", inp=inp, out=out, group=group)
    w1.wait_assigned(4)
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, inp, stream()), kwargs={"rate": 4_000}
    )
    feeder.start()
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= 2_000, 30, "the first outputs")
    assert feeder.is_alive(), "the stop should land mid-stream"
    w1.signal(sig)
    signalled.set()
    assert w1.proc is not None
    assert w1.proc.wait(40) == 0, w1.log()[-3000:]
    log = w1.log()
    assert "stopping: draining" in log and "partitions revoked" in log
    assert "Traceback" not in log
    at_stop = topic_size(kafka_bootstrap, out)
    w2 = workers("w-next", inp=inp, out=out, group=group)
    feeder.join(30)
    assert at_stop < len(sent), "the stop should land mid-stream"
    _wait_for_outputs(kafka_bootstrap, [out], len(sent), w2, timeout=90)
    assert w2.stop() == 0
    outputs = read_topic(kafka_bootstrap, out)
    seen = _check_every_input_came_out(sent, outputs, [])
    assert sum(seen.values()) == len(sent), "nothing twice: the stopped worker committed it all"
    _assert_each_key_keeps_its_order(sent, outputs)


#: Kafka's ``transaction.abort.timed.out.transaction.cleanup.interval.ms`` (default, as the
#: local broker runs): how often the broker looks for transactions past their timeout.
BROKER_ABORT_CHECK_S = 10


class _AbortWatch:
    """From construction on (a kill), how long until every transaction then open on
    ``topics`` ended: the partition's last stable offset moved past where it was held. A
    transaction begun later starts after that offset, so it cannot be mistaken for the old one."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        self.started = time.monotonic()
        self.held = {
            tp: stable
            for tp, (stable, end) in stable_offsets(bootstrap, topics).items()
            if stable < end
        }
        self.after: float | None = None
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while time.monotonic() - self.started < 120:  # bounded: result() then fails
            now = stable_offsets(self.bootstrap, self.topics)
            if all(now[tp][0] > stable for tp, stable in self.held.items()):
                self.after = time.monotonic() - self.started
                return
            time.sleep(0.5)

    def result(self) -> float:
        self.thread.join(130)
        if not self.held:  # killed between two transactions (rare): none to wait for
            return 0.0
        assert self.after is not None, f"still open 2 minutes after the kill: {self.held}"
        return self.after


def _types_sent(sent: list[SampleMessage]) -> Counter[str]:
    """Record types of the well-formed messages sent."""
    return Counter(
        effective_type(orjson.loads(m.value))  # the sample's log-hook records: log_hook
        for m in sent
        if not m.kind.startswith("malformed")
    )


@pytest.mark.long
def test_back_pressure_pauses_and_resumes_with_bounded_memory(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    inp, out = new_topic(4), new_topic(4)
    sent = list(generate(3_200, seed=41))
    produce(kafka_bootstrap, inp, sent)
    back_pressure, batch = 400, 100
    # The slowed producer side: librdkafka holds each output batch for 1.5 s before sending
    # (linger.ms), so acknowledgements arrive late and in waves, like a slow or distant cluster;
    # in-flight records pile up while fetching is fast, and no room comes within the second
    # the worker waits for it before it pauses (``flow.PAUSE_AFTER_S``).
    w = workers(
        "w-bp",
        inp=inp,
        out=out,
        group=f"g-{inp}",
        args=("--back-pressure", str(back_pressure), "--batch-size", str(batch)),
        env={"STREAMER_KAFKA_EXTRA": '{"linger.ms": "1500"}'},
    )
    # memory from when it works on the input on: its start-up (imports, clients) grows it
    # first, and on a loaded machine may last a good part of the run
    w.wait_assigned(4)
    rss: list[float] = []

    def progress() -> bool:
        assert w.alive(), w.log()[-3000:]
        rss.append(w.rss_mb())
        return topic_size(kafka_bootstrap, out) >= len(sent)

    wait_until(progress, 120, "all outputs", interval=0.5)
    m = w.metrics()
    assert w.stop() == 0
    pauses = m["streamer_backpressure_pauses_total"]
    peak = m["streamer_in_flight_max"]
    print(
        f"\npauses {pauses:.0f}, in-flight peak {peak:.0f} (limit {back_pressure}), "
        f"RSS min/max {min(rss):.0f}/{max(rss):.0f} MB"
    )
    assert pauses >= 5
    assert "back-pressure: partitions resumed" in w.log()
    assert peak <= back_pressure + batch, "in-flight stays bounded by back_pressure + one batch"
    steady = rss[len(rss) // 4 :]
    assert max(steady) - min(steady) < 40, "memory stays flat"
    outputs = read_topic(kafka_bootstrap, out)
    seen = _check_every_input_came_out(sent, outputs, [])
    assert sum(seen.values()) == len(sent), "nothing lost, nothing twice"


def _bounce(i: int, content: str) -> SampleMessage:
    rec = {
        "type": "Bounce",
        "id": f"reload-{i}",
        "num_attempts": 1,
        "recipient": f"u{i}@example.net",
        "response": {"code": 550, "enhanced_code": None, "content": content, "command": None},
    }
    return SampleMessage(f"reload-{i}".encode(), orjson.dumps(rec), [], "classify")


def _labels(bootstrap: str, topic: str) -> dict[str, str]:
    return {
        orjson.loads(o.value)["id"]: orjson.loads(o.value)["bounce_classification"]
        for o in read_topic(bootstrap, topic)
    }


def test_hot_reload_on_file_change_and_broken_rules_keep_old(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers, rules: Path
) -> None:
    inp, out = new_topic(2), new_topic(2)
    w = workers("w-reload", inp=inp, out=out, group=f"g-{inp}")
    w.wait_assigned()
    text = "mailbox unavailable: user unknown"
    produce(kafka_bootstrap, inp, [_bounce(i, text) for i in range(200)])
    _wait_for_outputs(kafka_bootstrap, [out], 200, w, timeout=30)

    rules.write_text('[rules]\nInactiveMailbox = ["user unknown"]\n')
    w.wait_log("rules reloaded", timeout=15)
    produce(kafka_bootstrap, inp, [_bounce(i, text) for i in range(200, 400)])
    _wait_for_outputs(kafka_bootstrap, [out], 400, w, timeout=30)

    rules.write_text('[rules]\nInvalidRecipient = ["user (unknown"]\n')  # bad regex
    w.wait_log("rules reload failed", timeout=15)
    produce(kafka_bootstrap, inp, [_bounce(i, text) for i in range(400, 600)])
    _wait_for_outputs(kafka_bootstrap, [out], 600, w, timeout=30)
    m = w.metrics()
    assert w.stop() == 0

    labels = _labels(kafka_bootstrap, out)
    assert len(labels) == 600
    assert {labels[f"reload-{i}"] for i in range(200)} == {"InvalidRecipient"}
    assert {labels[f"reload-{i}"] for i in range(200, 400)} == {"InactiveMailbox"}
    assert {labels[f"reload-{i}"] for i in range(400, 600)} == {"InactiveMailbox"}
    assert m["streamer_rules_reloads_total"] == 1
    assert m["streamer_rules_reload_failures_total"] == 1


@pytest.mark.long
def test_hot_reload_under_load_loses_and_stalls_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers, rules: Path
) -> None:
    """Records keep arriving while the rules file is replaced (atomically, as a deploy does):
    every record comes out once, each partition switches from the old label to the new one
    exactly once, and the worker never pauses."""
    inp, out = new_topic(2), new_topic(2)
    w = workers("w-load", inp=inp, out=out, group=f"g-{inp}")
    w.wait_assigned(2)
    text = "mailbox full: quota exceeded"
    during = [_bounce(i, text) for i in range(6_000)]
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, inp, during), kwargs={"rate": 1_500}
    )
    feeder.start()
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= 1_000, 30, "records flowing")
    new = rules.with_suffix(".new")
    new.write_text('[rules]\nPolicyRelated = ["quota exceeded"]\n')
    os.replace(new, rules)
    w.wait_log("rules reloaded", timeout=15)
    feeder.join(30)
    after = [_bounce(i, text) for i in range(6_000, 6_200)]  # sent once the reload was logged
    produce(kafka_bootstrap, inp, after)
    _wait_for_outputs(kafka_bootstrap, [out], 6_200, w, timeout=60)
    wait_until(lambda: w.metric("streamer_in_flight") == 0, 20, "in-flight to drain")
    m = w.metrics()
    assert w.stop() == 0

    outputs = read_topic(kafka_bootstrap, out)
    assert len(outputs) == 6_200, "every record once"
    labels = {orjson.loads(o.value or b"")["id"]: o for o in outputs}
    assert set(labels) == {f"reload-{i}" for i in range(6_200)}
    for o in [labels[f"reload-{i}"] for i in range(6_000, 6_200)]:
        assert orjson.loads(o.value or b"")["bounce_classification"] == "PolicyRelated"
    for p in (0, 1):
        seq = [
            orjson.loads(o.value or b"")["bounce_classification"]
            for o in sorted(outputs, key=lambda o: o.offset)
            if o.partition == p
        ]
        switch = seq.index("PolicyRelated")
        assert switch > 0 and set(seq[:switch]) == {"QuotaIssues"}, f"partition {p}"
        assert set(seq[switch:]) == {"PolicyRelated"}, f"partition {p}: one switch only"
    assert m["streamer_rules_reloads_total"] == 1
    assert m["streamer_rules_reload_failures_total"] == 0
    assert m["streamer_backpressure_pauses_total"] == 0, "no stall: never paused"


def test_sighup_reloads_rules(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers, rules: Path
) -> None:
    inp, out = new_topic(1), new_topic(1)
    w = workers("w-hup", inp=inp, out=out, group=f"g-{inp}", args=("--no-watch-rules",))
    w.wait_assigned()
    text = "mailbox full: quota exceeded"
    rules.write_text('[rules]\nPolicyRelated = ["quota exceeded"]\n')
    # A negative: twice the time a watching worker takes to notice the change; this one must not.
    time.sleep(2 * CHECK_INTERVAL_S)
    produce(kafka_bootstrap, inp, [_bounce(i, text) for i in range(100)])
    _wait_for_outputs(kafka_bootstrap, [out], 100, w, timeout=30)
    w.signal(signal.SIGHUP)
    w.wait_log("rules reloaded", timeout=15)
    produce(kafka_bootstrap, inp, [_bounce(i, text) for i in range(100, 200)])
    _wait_for_outputs(kafka_bootstrap, [out], 200, w, timeout=30)
    assert w.stop() == 0
    labels = _labels(kafka_bootstrap, out)
    assert {labels[f"reload-{i}"] for i in range(100)} == {"QuotaIssues"}
    assert {labels[f"reload-{i}"] for i in range(100, 200)} == {"PolicyRelated"}


@pytest.mark.long
def test_exactly_once_kill9_then_restart_no_duplicates(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    """With --exactly-once, outputs and offsets commit in one transaction per batch: after a
    crash, a read_committed reader sees every input exactly once."""
    inp, out = new_topic(4), new_topic(4)
    group = f"g-{inp}"
    sent = list(generate(12_000, seed=51, malformed_fraction=0.01, max_message_bytes=MAX_BYTES))
    w1 = workers("w-eos", inp=inp, out=out, group=group, args=("--exactly-once",))
    w1.wait_assigned(4)
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, inp, sent), kwargs={"rate": 4_000}
    )
    feeder.start()
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= 4_000, 30, "a third of the output")
    w1.kill9()  # an open transaction dies with it; the broker aborts it
    # w1's open transactions, watched from now on (w2's own come and go meanwhile)
    written = [out, f"{inp}.dlq", f"{inp}.stats"]
    aborts = _AbortWatch(kafka_bootstrap, written)
    w2 = workers("w-eos-restart", inp=inp, out=out, group=group, args=("--exactly-once",))
    feeder.join(30)
    n_bad = sum(m.kind.startswith("malformed") for m in sent)

    def all_committed() -> bool:
        assert w2.alive(), w2.log()[-3000:]
        return w2.metric("streamer_commits_total") > 0 and w2.metric("streamer_in_flight") == 0

    wait_until(all_committed, 90, "the restarted worker to commit")
    wait_until(
        lambda: len(read_topic(kafka_bootstrap, out)) >= len(sent) - n_bad,
        90,
        "every committed output",
        interval=1.0,
    )
    assert w2.stop() == 0
    # w2 has another worker id, so nothing fenced w1's open transaction: the broker aborts it
    # after the transaction timeout. Until then it holds back read_committed readers of every
    # partition it wrote (also a dead-letter or stats partition the outputs never waited on).
    wait_until(lambda: not open_transactions(kafka_bootstrap, written), 60, "the aborts")
    settled = aborts.result()
    # The timing is the promise here: the worker's transaction timeout, not librdkafka's
    # default (60 s), bounds how long a crash holds readers back. The broker aborts at most
    # its check interval (Kafka's default 10 s) after the timeout; the margin (20 s) is for a
    # loaded machine and still leaves the bound well below the 60 s it tells apart.
    bound = TRANSACTION_TIMEOUT_MS / 1000 + BROKER_ABORT_CHECK_S + 20
    assert settled < bound, f"w1's transactions were aborted only {settled:.0f} s after the kill"
    outputs = read_topic(kafka_bootstrap, out)  # read_committed: aborted outputs are invisible
    dlq = read_topic(kafka_bootstrap, f"{inp}.dlq")
    seen = _check_every_input_came_out(sent, outputs, dlq)
    dupes = sum(n - 1 for n in seen.values() if n > 1)
    raw = topic_size(kafka_bootstrap, out)
    print(
        f"\nexactly-once: {len(outputs)} committed outputs for {len(sent) - n_bad} good inputs; "
        f"{raw - len(outputs)} offsets in the topic are aborted outputs or markers; "
        f"every transaction closed {settled:.1f} s after the kill"
    )
    assert dupes == 0
    assert len(outputs) == len(sent) - n_bad
    assert len(dlq) == n_bad
    # the stats committed with the same transactions: exactly the records consumed
    types, labels = stats_totals(kafka_bootstrap, f"{inp}.stats")
    assert types == _types_sent(sent)
    enriched = [orjson.loads(o.value or b"{}") for o in outputs]
    assert labels == Counter(r["bounce_classification"] for r in enriched if "classification" in r)


def test_output_refused_by_broker_goes_to_dlq_and_is_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    """A delivery the broker refuses for good (here: the output topic's max.message.bytes is
    smaller than an enriched record) is dead-lettered with reason produce-failed, not lost."""
    from confluent_kafka.admin import AdminClient, NewTopic

    inp = new_topic(1)
    out = f"{inp}.small"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    fut = admin.create_topics([NewTopic(out, 1, 1, config={"max.message.bytes": "1500"})])
    fut[out].result(30)
    small = _bounce(1, "user unknown")  # ~500 bytes once enriched
    big = _bounce(2, "user unknown " + os.urandom(1500).hex())  # > 1500 even compressed
    w = workers("w-refused", inp=inp, out=out, group=f"g-{inp}")
    produce(kafka_bootstrap, inp, [small])
    _wait_for_outputs(kafka_bootstrap, [out], 1, w, timeout=60)
    produce(kafka_bootstrap, inp, [big])  # in a later producer batch than `small`
    _wait_for_outputs(kafka_bootstrap, [f"{inp}.dlq"], 1, w, timeout=60)
    wait_until(lambda: w.metric("streamer_in_flight") == 0, 20, "in-flight to drain")
    assert w.stop() == 0
    dlq = read_topic(kafka_bootstrap, f"{inp}.dlq")
    assert [d.key for d in dlq] == [big.key]
    assert dlq[0].header(DLQ_REASON) == b"produce-failed"
    assert dlq[0].header(DLQ_SOURCE_TOPIC) == inp.encode()
    assert dlq[0].header("streamer.dlq.source.partition") == b"0"
    assert orjson.loads(dlq[0].value)["id"] == "reload-2"
    assert [o.key for o in read_topic(kafka_bootstrap, out)] == [small.key]
    assert "delivery failed" in w.log()


def test_dead_letter_too_large_to_produce_lands_without_its_value(
    kafka_bootstrap: str, new_topic: Callable[..., str], workers
) -> None:
    """An input far over max_message_bytes is too large even for the DLQ producer: its dead
    letter lands without the value (reason and source kept), and the partition keeps moving."""
    inp, out = new_topic(1), new_topic(1)
    huge = _bounce(1, "x" * 200_000)  # > max_message_bytes + the producer's 64 KiB margin
    after = _bounce(2, "user unknown")
    w = workers("w-huge", inp=inp, out=out, group=f"g-{inp}")
    produce(kafka_bootstrap, inp, [huge, after])
    _wait_for_outputs(kafka_bootstrap, [out], 1, w, timeout=60)
    _wait_for_outputs(kafka_bootstrap, [f"{inp}.dlq"], 1, w, timeout=60)
    wait_until(lambda: w.metric("streamer_in_flight") == 0, 20, "in-flight to drain")
    assert w.stop() == 0
    (dlq,) = read_topic(kafka_bootstrap, f"{inp}.dlq")
    assert dlq.key == huge.key and dlq.value is None
    assert dlq.header(DLQ_REASON) == b"too-large"
    assert dlq.header(DLQ_SOURCE_OFFSET) == b"0"
    details = [v for k, v in dlq.headers if k == DLQ_DETAIL]
    assert any(d.startswith(b"value omitted (200") for d in details), details
    assert [o.key for o in read_topic(kafka_bootstrap, out)] == [after.key]
