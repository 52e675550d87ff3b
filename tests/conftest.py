"""Shared fixtures: one real Apache Kafka broker per test session, unique topics per test.

``kafka_bootstrap`` starts a dedicated local broker (its own state directory under pytest's tmp
dir, random free 127.0.0.1 ports) and stops it when the session ends; with
``STREAMER_TEST_BOOTSTRAP=host:port`` the tests use that cluster instead and leave it running.
Tests that use it are marked ``kafka`` automatically (``-m "not kafka"`` leaves them out), and
so is every test of ``test_security_kafka.py`` (some start a broker of their own).

Under pytest-xdist (``deploy/dev.sh test``: ``-n 3``) the session is per process: each process
starts its own broker at its first broker test, and tests are dealt one at a time to whichever
process is free. (No ``xdist_group``: with pytest 9 pytest-xdist 3.8 no longer applies it, see
pytest-dev/pytest-xdist#1386, so broker tests were never held in one process; should it work
again, one group would put every broker test, the longest part of the suite, in one process.)

The session broker runs in secure mode (``streamer kafka start --secure``): its PLAINTEXT
listener, which every other test uses, works as before (as a super user), and
``secure_broker`` gives the security tests its SASL_SSL listeners (one with a certificate for
another host name), CA and admin connection. Those tests are marked ``secure``: with
``STREAMER_TEST_BOOTSTRAP`` they fail saying so (another cluster has no such listeners), rather
than skip unseen; ``-m "not secure"`` leaves them out.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer

from streamer.config import Settings
from streamer.devkit.broker import (
    BrokerError,
    BrokerState,
    LocalBroker,
    stop_when_owner_exits,
)
from streamer.kafka.admin import create_topics
from streamer.kafka.probe import check_bootstrap

_KAFKA_FIXTURES = {"kafka_bootstrap", "new_topic", "kafka_settings", "secure_broker"}
#: Modules all of whose tests are the security tier (marked here: the file is left as it is).
_SECURE_MODULES = {"test_security_kafka"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        secure = "secure_broker" in fixtures or item.path.stem in _SECURE_MODULES
        if secure:
            item.add_marker(pytest.mark.secure)
        if secure or _KAFKA_FIXTURES & fixtures:
            item.add_marker(pytest.mark.kafka)
    items.sort(key=_dealing_order)


def _dealing_order(item: pytest.Item) -> int:
    """pytest-xdist deals the tests out in this order, one at a time to whichever process is
    free: the ``long`` ones first (one dealt last would run on alone at the end while the
    other process idles), then the other broker tests, then the short rest, which evens out
    the finish. The sort is stable: within each rank, the collection order."""
    if item.get_closest_marker("long"):
        return 0
    return 1 if item.get_closest_marker("kafka") else 2


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No STREAMER_* or KAFKA_BOOTSTRAP from the developer's shell may leak into Settings.

    ``STREAMER_CONFIG`` is registered first: ``--config`` sets it in the process, and the
    monkeypatch then undoes that after the test too.
    """
    monkeypatch.setenv("STREAMER_CONFIG", "")
    for var in list(os.environ):
        if var.startswith("STREAMER_") or var == "KAFKA_BOOTSTRAP":
            monkeypatch.delenv(var)
    return monkeypatch


@pytest.fixture(scope="session")
def test_rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-rule file, for Settings in tests that do not care about the shipped rules."""
    path = tmp_path_factory.mktemp("rules") / "test-rules.toml"
    path.write_text('[rules]\nInvalidRecipient = ["user unknown"]\n')
    return path


@pytest.fixture(scope="session")
def _session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerState | None]:
    """The session's local broker (secure mode), or None with ``STREAMER_TEST_BOOTSTRAP``."""
    given = os.environ.get("STREAMER_TEST_BOOTSTRAP")
    if given:
        check_bootstrap(Settings(bootstrap=given, files=[Path(os.devnull)]), given)
        yield None
        return
    broker = LocalBroker(tmp_path_factory.mktemp("kafka"))
    try:
        state, _ = broker.start(say=lambda _msg: None, secure=True, misnamed_listener=True)
    except BrokerError as exc:
        pytest.fail(f"could not start the test Kafka broker: {exc}", pytrace=False)
    stop_when_owner_exits(broker.dir)  # no orphan broker if this run is killed
    try:
        yield state
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(_session_broker: BrokerState | None) -> str:
    """Bootstrap address (PLAINTEXT) of the session's real Kafka broker."""
    if _session_broker is None:
        return os.environ["STREAMER_TEST_BOOTSTRAP"]
    return _session_broker.bootstrap


@pytest.fixture(scope="session")
def secure_broker(_session_broker: BrokerState | None) -> BrokerState:
    """The session broker's state with its SASL_SSL listeners (fails on another cluster)."""
    if _session_broker is None:
        pytest.fail(
            "STREAMER_TEST_BOOTSTRAP is set: the security tests need the session's own secure "
            "broker; unset it to run them, or leave them out with -m 'not secure'",
            pytrace=False,
        )
    assert _session_broker.secure_bootstrap, "the session broker was started --secure"
    return _session_broker


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, test_rules_file: Path, tmp_path: Path) -> Settings:
    """Settings pointing at the test broker (own state dir, a tiny rules file)."""
    return Settings(bootstrap=kafka_bootstrap, files=[test_rules_file], state_dir=tmp_path / "var")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in its own thread, as the worker's runs beside its fetch thread
    (which the test's own thread then plays)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def new_topic(
    kafka_bootstrap: str, kafka_settings: Settings, request: pytest.FixtureRequest
) -> Callable[..., str]:
    """Factory: ``new_topic(partitions=4) -> name`` creates a topic no other test uses."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name)[:60].strip("-.")

    def make(partitions: int = 4) -> str:
        name = f"t.{stem}.{uuid.uuid4().hex[:10]}"
        create_topics(kafka_settings, kafka_bootstrap, [name], partitions=partitions)
        return name

    return make


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's real Redis (Debian's redis-server on a free loopback port); tests keep
    to their own key prefix. Missing: a skip naming the package (a failure with CI=true)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()
