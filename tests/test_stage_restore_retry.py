"""A keyed stage's broker calls in a restore (``retried``): what asking again cures; a stop;
the changelog reader's error events it reads on past (``passing``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamer.worker.suppression_restore import StageStopped, passing, retried


def _failing(*codes: int) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def call() -> str:
        calls.append(len(calls))
        if len(calls) <= len(codes):
            raise KafkaException(KafkaError(codes[len(calls) - 1]))
        return "offsets"

    return calls, call


def test_a_stale_leader_epoch_after_a_broker_restart_is_asked_again() -> None:
    calls, call = _failing(KafkaError.FENCED_LEADER_EPOCH, KafkaError.UNKNOWN_LEADER_EPOCH)
    assert retried(call) == "offsets"
    assert len(calls) == 3


def test_an_error_asking_again_does_not_cure_is_raised_at_once() -> None:
    calls, call = _failing(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        retried(call)
    assert len(calls) == 1


def test_a_stopping_stage_asks_no_more() -> None:
    calls, call = _failing(KafkaError.LEADER_NOT_AVAILABLE)
    with pytest.raises(StageStopped):
        retried(call, stopping=lambda: bool(calls))
    assert len(calls) == 1


def test_the_changelog_reader_reads_on_past_a_broker_restarting() -> None:
    """Error events librdkafka sends while it reconnects (a broker restarting) are passing: a
    restore right after the broker came back read on instead of stopping its worker."""
    for code in (
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.FENCED_LEADER_EPOCH,
    ):
        assert passing(KafkaError(code)), code
    assert passing(KafkaError(KafkaError.UNKNOWN, retriable=True))
    for code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError._SSL, KafkaError._DESTROY):
        assert not passing(KafkaError(code)), code
