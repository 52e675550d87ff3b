"""``streamer demo``: the main job end to end on the bundled sample, then leave things clean.

1. Kafka: ``ensure_broker`` — the configured cluster (``KAFKA_BOOTSTRAP``/config) or the embedded
   local broker, started if it is not running (and stopped again at the end in that case).
2. Topics: the configured names with a per-run suffix (``kumomta.logs.demo-<time>-<hex>`` ...),
   so repeated or concurrent demos never mix, even on a shared cluster; deleted at the end.
3. A real ``streamer worker`` subprocess (metrics on a free port) reads the input topic.
4. The bundled sample (``streamer/devkit/data/sample.jsonl``, every record type, many providers) is
   produced, with two malformed messages of every dead-letter reason mixed in.
5. The output and dead-letter topics are read until every input is accounted for (bounded in
   time): each record by ``(id, type, num_attempts)``, each malformed message by its reason. The
   labels are checked against the same rules applied in this process.
6. The report: counts per classification, records passed through, dead letters by reason, a few
   enriched events, the worker's own metrics. Then SIGTERM to the worker (it drains, commits and
   exits 0), topics deleted, the local broker stopped if the demo started it.

The demo forces two settings on its worker: ``non_classifiable=pass`` (so that every record comes
out) and ``max_message_bytes=262144`` (its oversized sample must stay below Kafka's default 1 MB
message limit to reach the worker at all). Everything else comes from the usual configuration.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from streamer.analytics.suppression_fold import entry_reason
from streamer.config import Settings, rollup_stage_topics, suppression_stage_topics
from streamer.deadletter import DLQ_REASON
from streamer.devkit.broker import LocalBroker, ensure_broker
from streamer.devkit.console import Say, say
from streamer.devkit.harness import (
    HarnessError,
    Watermarks,
    WorkerSet,
    produce_all,
    scrape_metrics,
)
from streamer.devkit.sample import (
    BUNDLED_SAMPLE_SEED,
    SampleMessage,
    bundled_sample_path,
    load_bundled_sample,
    make_malformed,
    record_identity,
)
from streamer.kafka.admin import create_topics, delete_topics
from streamer.kafka.clients import admin_client
from streamer.kafka.topics import read_topic
from streamer.records import CLASSIFIABLE_TYPES, MALFORMED_REASONS, effective_type

Identity = tuple[str, str, int]

#: The demo worker's input size limit (see the module doc).
DEMO_MAX_MESSAGE_BYTES = 262_144
MALFORMED_PER_REASON = 2


@dataclass
class DemoTopics:
    input: str
    output: str
    dlq: str
    stats: str
    suppressions: str
    group: str

    @classmethod
    def for_run(cls, settings: Settings, suffix: str) -> DemoTopics:
        return cls(
            input=f"{settings.input_topic}.{suffix}",
            output=f"{settings.output_topic}.{suffix}",
            dlq=f"{settings.dlq_topic}.{suffix}",
            stats=f"{settings.stats_topic}.{suffix}",
            suppressions=f"{settings.suppressions_topic}.{suffix}",
            group=f"{settings.group_id}.{suffix}",
        )

    @property
    def names(self) -> list[str]:
        """Every topic of the run: the suppression stage's internal ones too (their default
        names, derived from the suppressions topic)."""
        internal = [*suppression_stage_topics(self.suppressions), *rollup_stage_topics(self.stats)]
        return [self.input, self.output, self.dlq, self.stats, self.suppressions, *internal]

    def settings(self, settings: Settings) -> Settings:
        """``settings`` with this run's analytics topics (created compacted)."""
        events, state = suppression_stage_topics(self.suppressions)
        partials, stats_state = rollup_stage_topics(self.stats)
        return settings.model_copy(
            update={
                "stats_topic": self.stats,
                "stats_partials_topic": partials,
                "stats_state_topic": stats_state,
                "suppressions_topic": self.suppressions,
                "suppression_events_topic": events,
                "suppression_state_topic": state,
            }
        )


@dataclass
class DemoInput:
    """What the demo feeds and what it must get back."""

    messages: list[SampleMessage]
    records: dict[Identity, dict[str, Any]]  # well-formed inputs by identity
    malformed: Counter[str]  # reason -> count

    @classmethod
    def build(cls, sample_path: Path | None = None) -> DemoInput:
        sample = load_bundled_sample(sample_path)
        records = {record_identity(r): r for r in (orjson.loads(m.value) for m in sample)}
        if len(records) != len(sample):
            raise HarnessError("the sample has records with the same (id, type, num_attempts)")
        rng = random.Random(BUNDLED_SAMPLE_SEED)
        bad = [
            make_malformed(
                reason,
                rng,
                orjson.loads(rng.choice(sample).value),
                max_message_bytes=DEMO_MAX_MESSAGE_BYTES,
            )
            for reason in MALFORMED_REASONS
            for _ in range(MALFORMED_PER_REASON)
        ]
        # Spread the malformed messages evenly through the stream.
        messages = list(sample)
        step = max(1, len(messages) // (len(bad) + 1))
        for i, m in enumerate(bad):
            messages.insert((i + 1) * step + i, m)
        malformed = Counter(m.kind.removeprefix("malformed:") for m in bad)
        return cls(messages, records, malformed)


@dataclass
class DemoResult:
    """What came out, checked against what went in."""

    outputs: list[dict[str, Any]] = field(default_factory=list)
    missing: int = 0
    duplicates: int = 0
    unexpected: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    label_mismatches: list[tuple[Identity, str, str]] = field(default_factory=list)
    passthrough_changed: int = 0
    seconds: float = 0.0

    def accounted(self, expected_malformed: Counter[str]) -> bool:
        return (
            self.missing == 0
            and self.unexpected == 0
            and self.dead_letters == expected_malformed
            and not self.label_mismatches
            and self.passthrough_changed == 0
        )


def collect(
    settings: Settings,
    bootstrap: str,
    topics: DemoTopics,
    demo_input: DemoInput,
    expected_labels: dict[Identity, str],
    workers: WorkerSet,
    timeout: float,
) -> DemoResult:
    """Read the output and DLQ topics until every input is accounted for or time is up."""
    want = len(demo_input.records) + sum(demo_input.malformed.values())
    marks = Watermarks(settings, bootstrap)
    started = time.monotonic()
    deadline = started + timeout
    result = DemoResult()
    try:
        while True:
            workers.check()
            written = marks.total([topics.output, topics.dlq])
            if written >= want or time.monotonic() > deadline:
                result = _check(settings, bootstrap, topics, demo_input, expected_labels)
                result.seconds = time.monotonic() - started
                done = result.accounted(demo_input.malformed)
                if done or time.monotonic() > deadline:
                    return result
            time.sleep(0.2)
    finally:
        marks.close()


def _check(
    settings: Settings,
    bootstrap: str,
    topics: DemoTopics,
    demo_input: DemoInput,
    expected_labels: dict[Identity, str],
) -> DemoResult:
    result = DemoResult()
    seen: Counter[Identity] = Counter()
    for out in read_topic(settings, bootstrap, topics.output, timeout=60):
        value = out.value
        try:
            rec = orjson.loads(value or b"")
        except orjson.JSONDecodeError:
            result.unexpected += 1
            continue
        ident = record_identity(rec) if isinstance(rec, dict) else None
        if ident is None or ident not in demo_input.records:
            result.unexpected += 1
            continue
        seen[ident] += 1
        if seen[ident] > 1:
            continue
        result.outputs.append(rec)
        if ident in expected_labels:
            got = str(rec.get("bounce_classification"))
            if got != expected_labels[ident] or "classification" not in rec:
                result.label_mismatches.append((ident, expected_labels[ident], got))
        elif rec != demo_input.records[ident]:
            result.passthrough_changed += 1
    for dead in read_topic(settings, bootstrap, topics.dlq, timeout=60):
        reason = dead.header(DLQ_REASON)
        name = reason.decode(errors="replace") if reason is not None else "?"
        result.dead_letters[name] += 1
    result.missing = sum(1 for ident in demo_input.records if ident not in seen)
    result.duplicates = sum(n - 1 for n in seen.values())
    return result


def expected_labels(settings: Settings, demo_input: DemoInput) -> dict[Identity, str]:
    """The labels the worker must assign: the same rules, applied here."""
    from streamer.classifier import Classifier
    from streamer.records import enrich

    classifier = Classifier.from_files(settings.rule_files)
    labels: dict[Identity, str] = {}
    for ident, rec in demo_input.records.items():
        if effective_type(rec) in CLASSIFIABLE_TYPES:
            labels[ident] = enrich(dict(rec), classifier)["bounce_classification"]
    return labels


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _table(rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    cells = [
        [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(r)]
        for r in rows
    ]
    return [("  " + "  ".join(r)).rstrip() for r in cells]


def _example(rec: dict[str, Any]) -> str:
    shown = {
        k: rec.get(k)
        for k in (
            "type",
            "id",
            "recipient",
            "site",
            "num_attempts",
            "response",
            "bounce_classification",
            "classification",
        )
    }
    return orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode()


def _examples(outputs: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Up to ``n`` classified events, each with a different label (most common labels first)."""
    by_label: dict[str, dict[str, Any]] = {}
    counts = Counter(r["bounce_classification"] for r in outputs if "classification" in r)
    for rec in outputs:
        label = rec.get("bounce_classification")
        if "classification" in rec and label != "Uncategorized" and label not in by_label:
            by_label[str(label)] = rec
    ranked = sorted(by_label, key=lambda lbl: -counts[lbl])
    return [by_label[lbl] for lbl in ranked[:n]]


def _sum(samples: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _labels, v in samples.get(name, []))


def _by(
    samples: dict[str, list[tuple[dict[str, str], float]]], name: str, label: str
) -> Counter[str]:
    out: Counter[str] = Counter()
    for labels, v in samples.get(name, []):
        out[labels.get(label, "?")] += int(v)
    return out


def _fmt_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.most_common())


def report(
    out: TextIO,
    *,
    demo_input: DemoInput,
    result: DemoResult,
    metrics: dict[str, list[tuple[dict[str, str], float]]],
    examples: int,
) -> None:
    w = out.write
    classified = [r for r in result.outputs if "classification" in r]
    passed = [r for r in result.outputs if "classification" not in r]
    labels = Counter(str(r["bounce_classification"]) for r in classified)
    total = max(1, len(classified))

    w(f"\nClassified events: {len(classified):,}\n")
    rows: list[tuple[str, ...]] = [("classification", "events", "share")]
    rows += [(lbl, f"{n:,}", f"{100 * n / total:.1f}%") for lbl, n in labels.most_common()]
    w("\n".join(_table(rows, {1, 2})) + "\n")
    by_type = Counter(str(r["type"]) for r in classified)
    w(f"  by record type: {_fmt_counts(by_type)}\n")

    w(f"\nPassed through unchanged (not classifiable): {len(passed):,}\n")
    w(f"  {_fmt_counts(Counter(str(r['type']) for r in passed))}\n")

    dead = sum(result.dead_letters.values())
    w(f"\nDead letters: {dead:,}\n  {_fmt_counts(result.dead_letters) or 'none'}\n")

    picks = _examples(result.outputs, examples)
    if picks:
        w(f"\nA few enriched events ({len(picks)}):\n")
        for rec in picks:
            w(_example(rec) + "\n")

    w("\nWorker metrics (its Prometheus endpoint):\n")
    if not metrics:
        w("  (the metrics endpoint did not answer)\n")
    else:
        _metrics_report(out, metrics)


def _metrics_report(out: TextIO, metrics: dict[str, list[tuple[dict[str, str], float]]]) -> None:
    """The worker's counters, caches and rules version, from its scraped metrics."""
    w = out.write
    hits = _by(metrics, "streamer_cache_hits_total", "cache")
    misses = _by(metrics, "streamer_cache_misses_total", "cache")
    n_classify = _sum(metrics, "streamer_classify_seconds_count")
    t_classify = _sum(metrics, "streamer_classify_seconds_sum")
    version = [lbl.get("version", "?") for lbl, _v in metrics.get("streamer_rules_info", [])]
    rows: list[tuple[str, ...]] = [
        ("streamer_events_in_total", f"{_sum(metrics, 'streamer_events_in_total'):,.0f}"),
        ("streamer_events_out_total", f"{_sum(metrics, 'streamer_events_out_total'):,.0f}"),
        ("streamer_dlq_total", f"{_sum(metrics, 'streamer_dlq_total'):,.0f}"),
        (
            "classifications",
            f"{n_classify:,.0f}, mean {1e6 * t_classify / n_classify:,.1f} µs"
            if n_classify
            else "0",
        ),
    ]
    rows += [
        (f"cache {cache}", f"{hits[cache]:,} hits, {misses[cache]:,} misses")
        for cache in sorted(set(hits) | set(misses))
    ]
    rows.append(("rules version", ", ".join(version) or "?"))
    w("\n".join(_table(rows, set())) + "\n")
    by_type = _by(metrics, "streamer_events_in_total", "record_type")
    w(f"  events in by type: {_fmt_counts(by_type)}\n")


def analytics_report(out: TextIO, settings: Settings, bootstrap: str, topics: DemoTopics) -> None:
    """Rates per mailbox provider and the top rule gaps, from the run's stats topic."""
    from streamer.report import RATE_KINDS, stats_data, tables

    rows = [orjson.loads(r.value or b"{}") for r in read_topic(settings, bootstrap, topics.stats)]
    suppressed = {
        r.key: r.value for r in read_topic(settings, bootstrap, topics.suppressions, timeout=60)
    }
    t = tables(stats_data(rows, topics.stats))
    w = out.write
    w(f"\nDeliverability per mailbox provider (stats topic {topics.stats}, {len(rows)} rows):\n")
    table: list[tuple[str, ...]] = [
        ("provider", "outcomes", *(title.removesuffix(" rate") for title, _ in RATE_KINDS))
    ]
    ranked = sorted(t.by_provider.items(), key=lambda kv: -kv[1].total)
    for provider, group in ranked:
        rates = [group.rate(kind) for _title, kind in RATE_KINDS]
        table.append(
            (
                provider,
                f"{group.total:,}",
                *("-" if r is None else f"{100 * r:.1f}%" for r in rates),
            )
        )
    w("\n".join(_table(table, set(range(1, len(table[0]))))) + "\n")
    w("  (share of outcomes: Delivery records, or the category of a classified record;\n")
    w("   complaints: abuse and fraud reports per delivery)\n")
    reasons = Counter(entry_reason(orjson.loads(v)) for v in suppressed.values() if v is not None)
    by_reason = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    live = sum(reasons.values())
    w(f"  suppressions: {live} addresses in {topics.suppressions}")
    w(f" ({by_reason})\n" if by_reason else "\n")
    _kumomta_view(out, settings, suppressed)
    w(
        "\nTop rule gaps (Uncategorized, or classified by the reply code alone; "
        "`streamer gaps` writes a rules skeleton):\n"
    )
    if not t.gaps:
        w("  none: a wording or status-code rule classified every response\n")
    for g in t.gaps[:5]:
        w(f"  {g['records']:>5}  {g['template'][:90]}\n")


def _kumomta_view(
    out: TextIO, settings: Settings, suppressed: dict[bytes | None, bytes | None]
) -> None:
    """A few entries as KumoMTA sees them: the Redis key `streamer suppressions sync` writes,
    and what deploy/kumomta/streamer_suppressions.lua answers at RCPT TO."""
    from streamer.kafka.suppression_list import entries_of, kumomta_refusal

    live = entries_of(suppressed)
    if not live:
        return
    out.write("  as KumoMTA sees them (`streamer suppressions sync` to Redis, deploy/kumomta):\n")
    for recipient in sorted(live)[:3]:
        out.write(f"    {settings.suppressions_redis_prefix}{recipient}\n")
        out.write(f"      RCPT TO refused: {kumomta_refusal(live[recipient])}\n")
    out.write("  the whole list: `streamer suppressions export --format csv`\n")


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


def run_demo(
    settings: Settings,
    *,
    timeout: float = 180.0,
    examples: int = 3,
    keep_topics: bool = False,
    out: TextIO = sys.stdout,
    say: Say = say,
) -> bool:
    """The whole demo; True when every input was accounted for (the exit status)."""
    started_broker = _broker_to_start(settings)
    bootstrap = ensure_broker(settings, say)
    where = _where(settings, started_broker)
    suffix = f"demo-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    topics = DemoTopics.for_run(settings, suffix)
    workdir = Path(tempfile.mkdtemp(prefix="streamer-demo-"))
    workers: WorkerSet | None = None
    ok = False
    try:
        demo_input = DemoInput.build()
        labels = expected_labels(settings, demo_input)
        w = out.write
        w("streamer demo\n")
        w(f"  Kafka      {bootstrap} ({where})\n")
        w(f"  topics     {topics.input} -> {topics.output}, dead letters {topics.dlq}\n")
        w(f"  analytics  {topics.stats} (stats), {topics.suppressions} (suppressions)\n")
        create_topics(topics.settings(settings), bootstrap, topics.names)
        workers = _start_worker(bootstrap, topics, workdir)
        port = workers.metrics_ports[0]
        w(f"  worker     pid {workers.procs[0].pid}, metrics http://127.0.0.1:{port}/metrics\n")
        _describe_input(out, demo_input)
        produce_all(settings, bootstrap, topics.input, demo_input.messages)
        result = collect(settings, bootstrap, topics, demo_input, labels, workers, timeout)
        metrics = scrape_metrics(port)
        report(out, demo_input=demo_input, result=result, metrics=metrics, examples=examples)
        ok = result.accounted(demo_input.malformed)
        codes = workers.stop()  # a graceful stop publishes the last stats update
        workers = None
        if codes != [0]:
            w(f"\nThe worker did not stop cleanly on SIGTERM (exit code {codes[0]}).\n")
            ok = False
        analytics_report(out, settings, bootstrap, topics)
        _verdict(out, ok, result, demo_input)
        return ok
    except HarnessError as exc:
        if workers is not None:
            say(f"worker log tail:\n{workers.tail(0)}")
        raise exc
    finally:
        if workers is not None:
            workers.stop()
        if keep_topics:
            say(f"kept topics {', '.join(topics.names)} (group {topics.group})")
        else:
            _delete_run(settings, bootstrap, topics)
        if started_broker is not None:
            say("stopping the local broker the demo started")
            started_broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _start_worker(bootstrap: str, topics: DemoTopics, workdir: Path) -> WorkerSet:
    """One `streamer worker` on the demo's topics, passing other record types through."""
    return WorkerSet.start(
        bootstrap,
        topics.input,
        topics.output,
        topics.dlq,
        topics.group,
        1,
        workdir,
        extra_env={
            "STREAMER_NON_CLASSIFIABLE": "pass",
            "STREAMER_MAX_MESSAGE_BYTES": str(DEMO_MAX_MESSAGE_BYTES),
            "STREAMER_STATS_TOPIC": topics.stats,
            "STREAMER_SUPPRESSIONS_TOPIC": topics.suppressions,
        },
    )


def _verdict(out: TextIO, ok: bool, result: DemoResult, demo_input: DemoInput) -> None:
    w = out.write
    if ok:
        w(
            f"\nResult: every input accounted for — {len(result.outputs):,} records out, "
            f"{sum(result.dead_letters.values())} dead letters, labels identical to the "
            f"rules applied locally — in {result.seconds:.1f}s.\n"
        )
    else:
        w(
            "\nResult: FAILED — "
            f"{result.missing} missing, {result.unexpected} unexpected, dead letters "
            f"{dict(result.dead_letters)} (expected {dict(demo_input.malformed)}), "
            f"{len(result.label_mismatches)} label mismatches "
            f"{result.label_mismatches[:3]}, {result.passthrough_changed} altered "
            "pass-through records.\n"
        )
    if result.duplicates:
        w(f"  ({result.duplicates} duplicates: at-least-once delivery redelivered them)\n")
    out.flush()


def _delete_run(settings: Settings, bootstrap: str, topics: DemoTopics) -> None:
    """The run's topics and its consumer groups (their committed offsets go too)."""
    with contextlib.suppress(Exception):
        delete_topics(settings, bootstrap, topics.names)
    with contextlib.suppress(Exception):
        groups = [topics.group, f"{topics.group}.suppressions"]
        deleted = admin_client(settings, bootstrap, log_level=3).delete_consumer_groups(
            groups, request_timeout=10
        )
        for future in deleted.values():
            future.result(timeout=15)


def _broker_to_start(settings: Settings) -> LocalBroker | None:
    """The local broker this run will start (to stop it at the end), if it is not running."""
    if settings.bootstrap:
        return None
    local = LocalBroker.for_settings(settings)
    return None if local.status().running else local


def _describe_input(out: TextIO, demo_input: DemoInput) -> None:
    n_bad = sum(demo_input.malformed.values())
    out.write(
        f"  input      {len(demo_input.records):,} records from {bundled_sample_path().name}"
        f" + {n_bad} malformed = {len(demo_input.messages):,} messages\n"
    )
    out.flush()


def _where(settings: Settings, started_broker: LocalBroker | None) -> str:
    if settings.bootstrap:
        return "configured cluster"
    return "local broker" + (", started for this demo" if started_broker else "")
