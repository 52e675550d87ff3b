"""A real Redis for tests: Debian's ``redis-server`` (installed by deploy/setup-system.sh) on
a free 127.0.0.1 port, its data in a temporary folder. Missing, the test is skipped naming the
package; with ``CI=true`` it fails (``system_tools.require``)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
from system_tools import require

from streamer.ports import free_port


class RedisServer:
    """One ``redis-server`` process; ``stop``/``start`` keep its port and folder (its data
    survives a clean stop: it saves its snapshot then, as configured here)."""

    def __init__(self, folder: Path) -> None:
        require("redis-server", package="redis-server")
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port("127.0.0.1")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.folder),
            "--save",
            "3600 1",  # a snapshot on a clean stop (SHUTDOWN saves when save points exist)
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        client = self.client()
        while True:
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                pass
            assert self.proc.poll() is None, self.log()[-2000:]
            assert time.monotonic() < deadline, "redis-server did not answer within 20 s"
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean stop (SIGTERM: it saves its snapshot first)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        self.proc = None

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""
