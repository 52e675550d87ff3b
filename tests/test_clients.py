"""Client configurations: per-role defaults, caller overrides, and the user's kafka_extra last."""

from __future__ import annotations

from pathlib import Path

from streamer.config import load_settings
from streamer.kafka.clients import consumer_config, producer_config


def test_kafka_extra_wins_over_role_defaults_and_overrides(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n')
    s = load_settings(
        files=[rules],
        security_protocol="SSL",
        kafka_extra={"linger.ms": "100", "auto.offset.reset": "latest"},
    )
    p = producer_config(s, "127.0.0.1:1", **{"linger.ms": 5, "client.id": "x"})
    assert p["linger.ms"] == "100" and p["client.id"] == "x" and p["acks"] == "all"
    assert p["security.protocol"] == "SSL" and p["bootstrap.servers"] == "127.0.0.1:1"
    c = consumer_config(s, "127.0.0.1:1")
    assert c["auto.offset.reset"] == "latest" and c["enable.auto.commit"] is False
    assert c["group.id"] == "streamer"
