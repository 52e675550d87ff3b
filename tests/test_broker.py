"""The local broker through the real CLI: start, reuse, status, stop, restart, failure to start."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from confluent_kafka import Producer

from streamer.config import Settings
from streamer.devkit.broker import (
    LocalBroker,
    cache_dir,
    ensure_broker,
    ensure_jars,
    free_port,
    kafka_version,
    stop_when_owner_exits,
)
from streamer.kafka.admin import create_topics, topic_partitions
from streamer.kafka.clients import producer_config
from streamer.kafka.probe import KafkaUnavailable

#: Every test here starts a JVM or needs the broker's jars.
pytestmark = pytest.mark.kafka

# The installed console script, as a user runs it (next to this interpreter in the venv).
_SCRIPT = Path(sys.executable).parent / "streamer"
STREAMER = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from streamer.cli import main; main()"]
)


def _env(state_dir: Path, rules: Path, **extra: str) -> dict[str, str]:
    """The test's own environment: no STREAMER_/KAFKA_ settings leak in from the shell."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("STREAMER_") or k == "STREAMER_CACHE_DIR"
    }
    env.pop("KAFKA_BOOTSTRAP", None)
    env["STREAMER_STATE_DIR"] = str(state_dir)
    env["STREAMER_FILES"] = json.dumps([str(rules)])
    env.update(extra)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STREAMER, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _pid_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _first_produce_warnings(bootstrap: str, topic: str) -> list[str]:
    """librdkafka's WARNING (or worse) lines while an idempotent producer delivers one record."""
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    log = logging.getLogger("test_broker.first_producer")
    log.addHandler(Keep(logging.WARNING))
    log.propagate = False
    producer = Producer({**producer_config(Settings(), bootstrap), "logger": log})
    delivered: list[object] = []
    producer.produce(topic, b"x", on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(60) == 0
    assert delivered == [None]
    return seen


@pytest.mark.long
def test_cli_start_reuse_status_stop_restart(tmp_path: Path, test_rules_file: Path) -> None:
    env = _env(tmp_path / "var", test_rules_file)
    before = _cli(env, "kafka", "status")
    assert before.returncode == 1, before
    assert "never started" in before.stdout

    first = _cli(env, "kafka", "start")
    assert first.returncode == 0, first.stderr
    bootstrap = first.stdout.strip().splitlines()[-1]
    assert bootstrap.startswith("127.0.0.1:")
    try:
        status = _cli(env, "kafka", "status", "--json")
        assert status.returncode == 0, status
        doc = json.loads(status.stdout)
        assert doc["running"] is True
        assert doc["bootstrap"] == bootstrap
        assert Path(doc["log_file"]).is_file()
        assert (Path(doc["data_dir"]) / "meta.properties").is_file()
        pid = doc["pid"]
        assert _pid_running(pid)

        # A second start reuses the running broker: same address, same process.
        again = _cli(env, "kafka", "start")
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines()[-1] == bootstrap
        assert "already running" in again.stderr
        assert json.loads(_cli(env, "kafka", "status", "--json").stdout)["pid"] == pid

        # It is a real broker: topics can be created and are kept across a restart.
        settings = Settings(bootstrap=bootstrap, files=[test_rules_file])
        create_topics(settings, bootstrap, ["kept"], partitions=3)

        stopped = _cli(env, "kafka", "stop")
        assert stopped.returncode == 0, stopped
        assert stopped.stdout.strip() == "stopped"
        assert not _pid_running(pid)
        after = _cli(env, "kafka", "status")
        assert after.returncode == 1
        assert "not running" in after.stdout

        # Restart: storage is not formatted again, the previous (free) port is kept.
        restarted = _cli(env, "kafka", "start")
        assert restarted.returncode == 0, restarted.stderr
        assert "formatting" not in restarted.stderr
        assert restarted.stdout.strip().splitlines()[-1] == bootstrap
        assert topic_partitions(settings, bootstrap).get("kept") == 3
        # The restarted broker hands out producer ids at once: a worker's idempotent producer
        # started now logs no "Failed to acquire idempotence PID ... load in progress".
        assert _first_produce_warnings(bootstrap, "kept") == []

        # A broker tied to an owner process is stopped when that owner dies (killed test runs).
        owner = subprocess.Popen(["sleep", "120"])
        stop_when_owner_exits(tmp_path / "var" / "kafka", owner.pid)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 60
        while _cli(env, "kafka", "status").returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _cli(env, "kafka", "status").returncode == 1
    finally:
        final = _cli(env, "kafka", "stop")
    assert final.stdout.strip() == "not running"


def test_start_failure_exits_nonzero_with_log_tail(tmp_path: Path, test_rules_file: Path) -> None:
    env = _env(tmp_path / "var", test_rules_file)
    with socket.socket() as blocker:  # something else already listens on the broker's port
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        result = _cli(env, "kafka", "start", "--port", str(taken), "--timeout", "90")
    assert result.returncode == 1, result
    assert "exited" in result.stderr and "last lines of" in result.stderr
    assert "Address already in use" in result.stderr or str(taken) in result.stderr
    # Nothing is left running or recorded as running.
    state = LocalBroker(tmp_path / "var" / "kafka").read_state()
    assert state is not None and state.pid is None
    assert _cli(env, "kafka", "status").returncode == 1


def test_ensure_broker_uses_configured_bootstrap(
    kafka_bootstrap: str, test_rules_file: Path
) -> None:
    settings = Settings(bootstrap=kafka_bootstrap, files=[test_rules_file])
    assert ensure_broker(settings, say=lambda _m: None) == kafka_bootstrap

    dead = Settings(bootstrap=f"127.0.0.1:{free_port()}", files=[test_rules_file])
    with pytest.raises(KafkaUnavailable, match="does not answer"):
        ensure_broker(dead, say=lambda _m: None)


@pytest.mark.timeout(900)  # run alone on a fresh machine, Maven resolves the jars first
def test_jars_are_cached_outside_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    libs = ensure_jars(say=lambda _m: None)  # resolves them when no broker did yet
    assert libs == cache_dir() / f"kafka-{kafka_version()}" / "libs"
    assert (libs / f"kafka_2.13-{kafka_version()}.jar").is_file()
    assert any(p.name.startswith("log4j-core-") for p in libs.iterdir())
    assert Path(__file__).resolve().parent.parent not in libs.resolve().parents

    monkeypatch.setenv("STREAMER_CACHE_DIR", "/somewhere/else")
    assert cache_dir() == Path("/somewhere/else")
