"""A real, throw-away Prometheus server for tests and local checks (Debian's ``prometheus``).

:class:`PrometheusServer` writes a generated configuration (one scrape job over the given
``host:port`` targets, ``scrape_interval`` 1 s by default) and a storage directory under a
work directory, runs ``prometheus`` on a free 127.0.0.1 port, waits until ``/-/ready`` answers
and evaluates PromQL through the HTTP API (:meth:`PrometheusServer.query`). Every wait is
bounded in time; :meth:`PrometheusServer.stop` ends the process it started, and only that one.

The configuration is written as JSON, which is YAML too: nothing beyond the standard library.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from streamer.devkit.broker import free_port

#: What to install when the binaries are missing (named in errors and test skips).
INSTALL_HINT = "install Debian's `prometheus` package (apt-get install prometheus)"


class PrometheusError(Exception):
    """The server could not be started or did not answer; the message says why."""


class PrometheusMissing(PrometheusError):
    """``prometheus`` (or ``promtool``) is not installed."""


class QueryError(PrometheusError):
    """Prometheus refused a query (``status`` ``error``): bad PromQL, timeout, ..."""

    def __init__(self, query: str, error_type: str, error: str) -> None:
        super().__init__(f"{error_type}: {error} (query: {query})")
        self.query = query
        self.error_type = error_type
        self.error = error


def find_binary(name: str = "prometheus") -> str:
    """The path of ``prometheus`` / ``promtool``; :class:`PrometheusMissing` when absent."""
    path = shutil.which(name)
    if path is None:
        raise PrometheusMissing(f"{name} not found: {INSTALL_HINT}")
    return path


def render_config(
    targets: Sequence[str],
    *,
    job: str = "streamer",
    scrape_interval_s: float = 1.0,
    metrics_path: str = "/metrics",
) -> str:
    """The configuration text: one job ``job`` scraping ``targets`` (``host:port``)."""
    if not targets:
        raise ValueError("at least one scrape target")
    interval = f"{max(1, round(scrape_interval_s * 1000))}ms"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": job,
                "metrics_path": metrics_path,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def check_config(path: Path, timeout: float = 30.0) -> str:
    """``promtool check config``: its output; :class:`PrometheusError` when it refuses."""
    promtool = find_binary("promtool")
    try:
        done = subprocess.run(
            [promtool, "check", "config", str(path)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        message = f"promtool check config {path}: no answer in {timeout:.0f}s"
        raise PrometheusError(message) from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        raise PrometheusError(f"promtool check config {path}: {output}")
    return output


class PrometheusServer:
    """One ``prometheus`` process on 127.0.0.1 with its own config and storage in ``workdir``.

    Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        targets: Sequence[str],
        *,
        job: str = "streamer",
        scrape_interval_s: float = 1.0,
        binary: str | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.targets = list(targets)
        self.job = job
        self.scrape_interval_s = scrape_interval_s
        self.binary = binary
        self.config_path = self.workdir / "prometheus.yml"
        self.storage = self.workdir / "data"
        self.log_path = self.workdir / "prometheus.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        """Start and wait until ready (at most ``timeout`` seconds, a few port tries)."""
        binary = self.binary or find_binary("prometheus")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)
        self.config_path.write_text(
            render_config(self.targets, job=self.job, scrape_interval_s=self.scrape_interval_s),
            encoding="utf-8",
        )
        deadline = time.monotonic() + timeout
        last = ""
        for _attempt in range(3):  # another process may take the free port before we bind it
            self.port = free_port()
            cmd = [
                binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.storage}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ]
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready(deadline):
                return self
            last = self.log()[-2000:]
            self.stop()
            if time.monotonic() >= deadline:
                break
        raise PrometheusError(f"prometheus did not become ready in {timeout:.0f}s:\n{last}")

    def _wait_ready(self, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the process this object started (kill it after ``timeout``)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def __enter__(self) -> PrometheusServer:
        return self.start() if self.proc is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- HTTP API ------------------------------------------------------------------------------

    def api(self, path: str, params: dict[str, str], timeout: float = 10.0) -> Any:
        """GET ``/api/v1/<path>``: the ``data`` of a successful answer, else :class:`QueryError`."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 400/422/503 carry a JSON error body
            body = exc.read()
            if not body.startswith(b"{"):
                raise PrometheusError(f"GET {url}: HTTP {exc.code}") from None
        except OSError as exc:
            raise PrometheusError(f"GET {url}: {exc}") from None
        doc = json.loads(body)
        if doc.get("status") != "success":
            raise QueryError(
                params.get("query", path), str(doc.get("errorType")), str(doc.get("error"))
            )
        return doc["data"]

    def query(self, promql: str, at: float | None = None, timeout: float = 10.0) -> list[Any]:
        """An instant query's result (a list of samples; ``[]`` when nothing matched).

        Scalars and strings come back as a one-element list ``[[time, value]]``."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", params, timeout)
        result = data["result"]
        if data["resultType"] in ("scalar", "string"):
            return [result]
        return list(result)

    def targets_up(self) -> dict[str, str]:
        """Scrape URL -> health ("up", "down", "unknown") of the active targets."""
        data = self.api("targets", {"state": "active"})
        return {t["scrapeUrl"]: t["health"] for t in data["activeTargets"]}

    def wait_for(self, promql: str, timeout: float = 30.0, interval: float = 0.5) -> list[Any]:
        """Query until the result is non-empty (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() >= deadline:
                raise PrometheusError(f"no data for {promql} after {timeout:.0f}s")
            if not self.alive():
                raise PrometheusError(f"prometheus exited:\n{self.log()[-2000:]}")
            time.sleep(interval)
