"""Configuration precedence (defaults < TOML < env < CLI) and validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("STREAMER_CONFIG", "KAFKA_BOOTSTRAP", "STREAMER_BOOTSTRAP", "STREAMER_CACHE_SIZE"):
        monkeypatch.delenv(var, raising=False)


def _rules(tmp_path: Path) -> Path:
    f = tmp_path / "r.toml"
    f.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n')
    return f


def test_defaults(tmp_path: Path) -> None:
    s = load_settings(files=[_rules(tmp_path)])
    assert s.input_topic == "kumomta.logs"
    assert s.output_topic == "kumomta.classified"
    assert s.dlq_topic == "kumomta.logs.dlq"
    assert (s.back_pressure, s.cache_size, s.uncategorized_cache_size) == (10_000, 1024, 1024)
    assert s.pool_size >= 1
    assert s.metrics_host == "127.0.0.1"
    assert s.bootstrap is None


def test_precedence_toml_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = _rules(tmp_path)
    cfg = tmp_path / "streamer.toml"
    cfg.write_text(
        f'input_topic = "from-toml"\n[classifier]\ncache_size = 7\nfiles = ["{rules.name}"]\n'
        '[kafka]\nbootstrap = "toml:9092"\n'
    )
    s = load_settings(cfg)
    assert (s.input_topic, s.cache_size, s.bootstrap) == ("from-toml", 7, "toml:9092")
    assert s.files == [rules.resolve()]  # relative to the config file
    assert s.dlq_topic == "from-toml.dlq"

    monkeypatch.setenv("STREAMER_CACHE_SIZE", "8")
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "env:9092")
    s = load_settings(cfg)
    assert (s.cache_size, s.bootstrap) == (8, "env:9092")

    s = load_settings(cfg, cache_size=9, bootstrap="cli:9092", input_topic=None)
    assert (s.cache_size, s.bootstrap, s.input_topic) == (9, "cli:9092", "from-toml")


def test_invalid_values_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"non_classifiable: .*pass"):
        load_settings(files=[_rules(tmp_path)], non_classifiable="bin")
    with pytest.raises(ConfigError, match="cache_size"):
        load_settings(files=[_rules(tmp_path)], cache_size=-1)
    with pytest.raises(ConfigError, match="no_such_key"):
        load_settings(files=[_rules(tmp_path)], no_such_key=1)


def test_bad_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("input_topic = \n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_kafka_client_config_tls_sasl(tmp_path: Path) -> None:
    s = load_settings(
        files=[_rules(tmp_path)],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="u",
        sasl_password="p",
        ssl_ca_location="/ca.pem",
        kafka_extra={"client.id": "x"},
    )
    conf = s.kafka_client_config()
    assert conf == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
        "client.id": "x",
    }
