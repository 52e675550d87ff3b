"""A keyed stage's broker calls in a restore (``retried``): what asking again cures; a stop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamer.worker.suppression_restore import StageStopped, retried


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
