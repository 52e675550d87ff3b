"""A keyed stage's writes, without a broker: a failed one is never missed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamer.config import Settings
from streamer.worker.stage_output import StageOutput, _producer_config
from streamer.worker.suppression_restore import StageError


def test_a_write_that_fails_stops_the_flush_though_only_failures_are_reported(
    tmp_path: Path,
) -> None:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    output = StageOutput(
        settings,
        "127.0.0.1:9",
        worker_id="t",
        suffix="suppressions",
        kind="suppression",
        public_topic="kumomta.suppressions",
        state_topic="kumomta.suppressions.state",
        counts={"public_writes": 0, "state_writes": 0},
        log=logging.getLogger("test"),
    )
    conf = _producer_config(settings, "127.0.0.1:9", "t", "suppressions")
    assert conf["delivery.report.only.error"] is True
    # the stage's own producer configuration, with a short message timeout: nothing listens
    output.producer = Producer({**conf, "message.timeout.ms": 200, "log_level": 0})
    output._produce(output.public_topic, b"a@example.com", b"{}")
    with pytest.raises(StageError, match=r"suppression writes failed: .*Message timed out"):
        output._flush()
