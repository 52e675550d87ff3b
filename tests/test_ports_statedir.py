"""Two workers on one host: busy ports are replaced by free ones, Faust folders do not pile up;
and the metrics endpoint exports process and GC metrics."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer import statedir
from streamer.metrics import Metrics
from streamer.ports import PortInUseError, pick_port, pick_web_port, port_is_free


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_pick_port_keeps_a_free_port_and_replaces_a_busy_one(
    busy_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    assert not port_is_free("127.0.0.1", busy_port)
    assert pick_web_port("127.0.0.1", 0) == 0  # disabled stays disabled
    with caplog.at_level(logging.WARNING):
        chosen = pick_web_port("127.0.0.1", busy_port)
    assert chosen not in (0, busy_port) and port_is_free("127.0.0.1", chosen)
    assert f"web_port: 127.0.0.1:{busy_port} is in use; listening on port {chosen}" in caplog.text
    assert pick_port("127.0.0.1", chosen, "web_port") == chosen
    with pytest.raises(PortInUseError, match=rf"^.*web_port: 127.0.0.1:{busy_port} is in use"):
        pick_port("127.0.0.1", busy_port, "web_port", fallback=False)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        return str(resp.read().decode())


def test_second_metrics_endpoint_on_a_busy_port_takes_a_free_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = Metrics()
    port = first.serve("127.0.0.1", _free())
    with caplog.at_level(logging.WARNING):
        second_port = Metrics().serve("127.0.0.1", port)
    assert second_port != port
    assert f"metrics_port: 127.0.0.1:{port} is in use" in caplog.text
    with pytest.raises(PortInUseError, match="metrics_port"):
        Metrics().serve("127.0.0.1", port, fallback=False)
    for p in (port, second_port):
        assert "streamer_events_in" in _scrape(p)


def _free() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_export_process_and_gc_metrics() -> None:
    port = Metrics().serve("127.0.0.1", _free())
    text = _scrape(port)
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "python_gc_collections_total",
    ):
        assert f"\n{name}" in text, name


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_stale_faust_folders_are_removed_live_and_foreign_ones_kept(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead = _dead_pid()
    mine = statedir.claim(tmp_path, "me")
    assert json.loads((mine / "owner.json").read_text())["pid"] == os.getpid()
    gone = statedir.faust_dir(tmp_path, "gone")
    gone.mkdir()
    (gone / "owner.json").write_text(json.dumps({"host": host, "pid": dead, "started": 1.0}))
    legacy = statedir.faust_dir(tmp_path, f"{host}-{dead}")  # default id, no owner file
    legacy.mkdir()
    recycled = statedir.faust_dir(tmp_path, "recycled")  # our pid, but an older process's
    recycled.mkdir()
    (recycled / "owner.json").write_text(
        json.dumps({"host": host, "pid": os.getpid(), "started": 1.0})
    )
    foreign = statedir.faust_dir(tmp_path, "elsewhere")
    foreign.mkdir()
    (foreign / "owner.json").write_text(json.dumps({"host": host + "-x", "pid": dead}))
    custom = statedir.faust_dir(tmp_path, "worker-a")  # a chosen id without owner: unknown
    custom.mkdir()

    removed = statedir.remove_stale(tmp_path)
    assert set(removed) == {gone, legacy, recycled}
    assert mine.is_dir() and foreign.is_dir() and custom.is_dir()
    assert statedir.remove_stale(tmp_path / "nothing-here") == []
