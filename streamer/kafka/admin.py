"""Topic administration with confluent-kafka's AdminClient: idempotent create, delete, wait."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from streamer.config import Settings, parse_non_classifiable
from streamer.kafka.clients import admin_client


class TopicError(Exception):
    """A topic operation failed; the message names the topic and the broker's reason."""


def default_topics(settings: Settings) -> list[str]:
    """The topics a worker needs: input, output, dead letters, a ``topic:NAME`` target, and the
    analytics topics (when analytics are on)."""
    other = parse_non_classifiable(settings.non_classifiable, settings.output_topic)
    names = [settings.input_topic, settings.output_topic, settings.dlq_topic or "", other or ""]
    names += compacted_topics(settings) + stage_topics(settings)
    return list(dict.fromkeys(n for n in names if n))  # de-duplicated, order kept


def compacted_topics(settings: Settings) -> list[str]:
    """Topics whose latest record per key is the truth: created with cleanup.policy=compact."""
    if not settings.analytics:
        return []
    return [
        settings.stats_topic,
        settings.stats_rates_topic or "",
        settings.suppressions_topic,
        settings.suppression_state_topic or "",
        settings.stats_state_topic or "",
    ]


def suppression_topics(settings: Settings) -> list[str]:
    """The suppression stage's internal topics: its events (time-retained) and changelog."""
    if not settings.analytics:
        return []
    return [settings.suppression_events_topic or "", settings.suppression_state_topic or ""]


def rollup_topics(settings: Settings) -> list[str]:
    """The stats rollup stage's internal topics: its partials (time-retained) and changelog."""
    if not settings.analytics:
        return []
    return [settings.stats_partials_topic or "", settings.stats_state_topic or ""]


def stage_topics(settings: Settings) -> list[str]:
    """Every keyed stage's internal topics (inputs, changelog), read in the stages' groups."""
    return suppression_topics(settings) + rollup_topics(settings)


def stage_groups(settings: Settings) -> list[str]:
    """The keyed stages' consumer groups (``streamer.worker.keyed_stage``)."""
    if not settings.analytics:
        return []
    return [f"{settings.group_id}.suppressions", f"{settings.group_id}.stats"]


def create_topics(
    settings: Settings,
    bootstrap: str,
    names: Iterable[str] | None = None,
    partitions: int | None = None,
    replication: int | None = None,
    timeout: float = 30.0,
) -> dict[str, bool]:
    """Create the topics (default: ``default_topics``); existing ones are fine.

    Returns ``{name: created}``: True when this call created it, False when it already existed.
    Waits until every topic has a leader for each partition, so producers can use them at once.
    """
    wanted = list(dict.fromkeys(names if names is not None else default_topics(settings)))
    if not wanted:
        return {}
    admin = admin_client(settings, bootstrap)
    compacted = set(compacted_topics(settings))
    new = [
        NewTopic(
            name,
            num_partitions=partitions or settings.partitions,
            replication_factor=replication or settings.replication_factor,
            config={"cleanup.policy": "compact"} if name in compacted else {},
        )
        for name in wanted
    ]
    futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
    result: dict[str, bool] = {}
    errors: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            result[name] = True
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = False
            else:
                errors.append(f"{name}: {err.str() if isinstance(err, KafkaError) else err}")
    if errors:
        raise TopicError("could not create topics:\n  " + "\n  ".join(errors))
    wait_for_topics(settings, bootstrap, wanted, timeout=timeout)
    return {name: result[name] for name in wanted}


def delete_topics(
    settings: Settings, bootstrap: str, names: Iterable[str], timeout: float = 30.0
) -> list[str]:
    """Delete the topics; unknown ones are ignored. Returns the names actually deleted."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    admin = admin_client(settings, bootstrap)
    futures = admin.delete_topics(wanted, operation_timeout=timeout, request_timeout=timeout)
    deleted: list[str] = []
    errors: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            deleted.append(name)
        except KafkaException as exc:
            err = exc.args[0]
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            errors.append(f"{name}: {err.str() if isinstance(err, KafkaError) else err}")
    if errors:
        raise TopicError("could not delete topics:\n  " + "\n  ".join(errors))
    return deleted


def topic_partitions(settings: Settings, bootstrap: str, timeout: float = 10.0) -> dict[str, int]:
    """Every non-internal topic with its partition count."""
    md = admin_client(settings, bootstrap).list_topics(timeout=timeout)
    return {
        name: len(t.partitions)
        for name, t in md.topics.items()
        if t.error is None and not name.startswith("__")
    }


def wait_for_topics(
    settings: Settings, bootstrap: str, names: Iterable[str], timeout: float = 30.0
) -> None:
    """Return once every topic exists with a leader on every partition; TopicError otherwise."""
    wanted = set(names)
    admin = admin_client(settings, bootstrap)
    deadline = time.monotonic() + timeout
    missing: set[str] = set(wanted)
    errors: dict[str, str] = {}
    while True:
        try:
            md = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        except KafkaException:
            md = None
        if md is not None:
            missing = {
                n
                for n in wanted
                if n not in md.topics
                or md.topics[n].error is not None
                or not md.topics[n].partitions
                or any(p.leader < 0 for p in md.topics[n].partitions.values())
            }
            if not missing:
                return
            # e.g. "Broker: Topic authorization failed": the principal may not see the topic
            errors = {
                n: _describe(md.topics[n].error)
                for n in missing
                if n in md.topics and md.topics[n].error is not None
            }
        if time.monotonic() >= deadline:
            errors.update(_topic_errors(admin, missing - set(errors)))
            named = [f"{n} ({errors[n]})" if n in errors else n for n in sorted(missing)]
            raise TopicError(f"topics not ready within {timeout:.0f}s: {', '.join(named)}")
        time.sleep(0.1)


def _describe(err: object) -> str:
    return err.str() if isinstance(err, KafkaError) else str(err)


def _topic_errors(admin: AdminClient, names: Iterable[str]) -> dict[str, str]:
    """Why each topic is missing, asked one by one: a listing of every topic leaves out those
    the principal may not describe, a request naming one says "Topic authorization failed"."""
    errors: dict[str, str] = {}
    for name in names:
        try:
            meta = admin.list_topics(name, timeout=5.0).topics.get(name)
        except KafkaException:
            continue
        if meta is not None and meta.error is not None:
            errors[name] = _describe(meta.error)
    return errors
