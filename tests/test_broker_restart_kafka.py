"""Supervised workers across a restart of their broker: nothing is lost, and the exactly-once
worker duplicates nothing.

The broker is stopped for longer than the consumers' session (10 s), so the workers lose their
partitions and get them back on a broker that left and came back: the case where librdkafka's
``send_offsets_to_transaction`` hangs (``streamer.worker.watchdog``). The test has a broker of its
own: the session's broker serves every other test and must not go away.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from worker_harness import (
    RULES_V1,
    WorkerProcess,
    open_transactions,
    produce,
    read_topic,
    stop_story,
    wait_until,
)

from streamer.config import Settings
from streamer.devkit.broker import BrokerState, LocalBroker, stop_when_owner_exits
from streamer.devkit.sample import generate, record_identity
from streamer.kafka.admin import create_topics

pytestmark = [pytest.mark.kafka, pytest.mark.long, pytest.mark.timeout(400)]

#: Longer than the consumers' session timeout (10 s): the workers lose their partitions.
OUTAGE_S = 15
MODES = ("--at-least-once", "--exactly-once")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[LocalBroker, BrokerState]]:
    broker = LocalBroker(tmp_path / "kafka")
    state, _ = broker.start(say=lambda _msg: None)
    stop_when_owner_exits(broker.dir)  # no orphan broker if this run is killed
    try:
        yield broker, state
    finally:
        broker.stop()


@contextmanager
def _held(*ports: int) -> Iterator[None]:
    """Keep ``ports`` from being handed out while the broker is away: a bound socket (never
    listening: clients still find the port closed) makes the kernel skip it when a process
    asks for a free port; SO_REUSEADDR, as the broker's own sockets, lets the binding past
    the stopped broker's connections in TIME_WAIT, and the broker bind again once released."""
    socks = []
    try:
        for port in ports:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
        yield
    finally:
        for sock in socks:
            sock.close()


def _identities(values: list[bytes | None]) -> Counter[tuple[str, str, int]]:
    return Counter(record_identity(orjson.loads(v or b"{}")) for v in values)


def test_supervised_workers_ride_out_a_broker_restart(
    own_broker: tuple[LocalBroker, BrokerState], tmp_path: Path, test_rules_file: Path
) -> None:
    broker, state = own_broker
    bootstrap = state.bootstrap
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    # the count does not matter to the promise (each half is caught up on its own side of the
    # outage): a few per partition and process is enough, and a full read per check stays cheap
    sent = list(generate(2_000, seed=61))
    want = _identities([m.value for m in sent])
    topics = {mode: (f"in{i}", f"out{i}") for i, mode in enumerate(MODES)}
    settings = Settings(bootstrap=bootstrap, files=[test_rules_file])
    create_topics(settings, bootstrap, [t for pair in topics.values() for t in pair], partitions=4)
    workers = {
        mode: WorkerProcess(
            bootstrap,
            tmp_path,
            name=f"w{i}",
            input_topic=inp,
            output_topic=out,
            group=f"g{i}",
            rules=rules,
            args=("--log-format", "text", "--processes", "2", mode),
        ).start()
        for i, (mode, (inp, out)) in enumerate(topics.items())
    }
    try:
        half = len(sent) // 2
        for inp, _out in topics.values():
            produce(bootstrap, inp, sent[:half])

        def caught_up(out: str, n: int) -> bool:
            assert all(w.alive() for w in workers.values())
            return not open_transactions(bootstrap, [out]) and len(read_topic(bootstrap, out)) >= n

        for _inp, out in topics.values():
            wait_until(lambda out=out: caught_up(out, half), 120, f"{out} before the outage")

        assert broker.stop()
        with _held(state.port, state.controller_port):  # no other process takes them meanwhile
            time.sleep(OUTAGE_S)  # the outage itself (longer than the sessions), not a wait
        restarted, _ = broker.start(
            say=lambda _msg: None, port=state.port, controller_port=state.controller_port
        )
        assert restarted.bootstrap == bootstrap  # its own port: the workers reconnect
        feeders = [
            threading.Thread(target=produce, args=(bootstrap, inp, sent[half:]))
            for inp, _out in topics.values()
        ]
        for f in feeders:
            f.start()
        for f in feeders:
            f.join(60)

        def complete(out: str) -> bool:
            assert all(w.alive() for w in workers.values())  # the supervisors stay up
            if open_transactions(bootstrap, [out]):
                return False
            return not (want - _identities([r.value for r in read_topic(bootstrap, out)]))

        for _inp, out in topics.values():
            wait_until(lambda out=out: complete(out), 150, f"every record in {out}", interval=2)
        for w in workers.values():
            code = w.stop()
            assert code == 0, stop_story(w.log())
    finally:
        for w in workers.values():
            w.cleanup()

    at_least_once = _identities([r.value for r in read_topic(bootstrap, topics[MODES[0]][1])])
    exactly_once = _identities([r.value for r in read_topic(bootstrap, topics[MODES[1]][1])])
    assert not (want - at_least_once) and not (want - exactly_once)  # nothing lost
    assert exactly_once == want  # and nothing twice
    eos_log = workers[MODES[1]].log()
    print(
        f"\nbroker away {OUTAGE_S} s: at-least-once {sum((at_least_once - want).values())} "
        f"duplicates; exactly-once none, {eos_log.count('blocking call hung')} hung "
        f"transactional calls ended by the watchdog, "
        f"{eos_log.count('worker exited; restarting')} restarts"
    )
