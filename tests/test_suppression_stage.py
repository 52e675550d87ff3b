"""The suppression stage's writes, without a broker: a failed one is never missed."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamer.config import Settings
from streamer.worker.suppression_restore import StageError
from streamer.worker.suppressor import SuppressionStage, _producer_config


def test_a_write_that_fails_stops_the_flush_though_only_failures_are_reported(
    tmp_path: Path,
) -> None:
    settings = Settings(bootstrap="127.0.0.1:9", files=[Path(__file__)], state_dir=tmp_path)
    stage = SuppressionStage(settings, "127.0.0.1:9", worker_id="t")
    conf = _producer_config(settings, "127.0.0.1:9", "t")
    assert conf["delivery.report.only.error"] is True
    # the stage's own producer configuration, with a short message timeout: nothing listens
    stage.producer = Producer({**conf, "message.timeout.ms": 200, "log_level": 0})
    try:
        stage._produce(stage.public_topic, b"a@example.com", b"{}")
        with pytest.raises(StageError, match=r"suppression writes failed: .*Message timed out"):
            stage._flush()
    finally:
        stage.consumer.close()
