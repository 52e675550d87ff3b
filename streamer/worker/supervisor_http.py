"""The supervisor's endpoints: the children's metrics on one ``/metrics``, and ``/status``.

Metrics are aggregated by scraping: at each scrape of the supervisor, every running child's own
endpoint (loopback, a port of its own) is read and its samples are re-exposed with a
``process="<i>"`` label, so ``sum by (...)`` over the supervisor's series is the host's total and
a single child stays visible. (prometheus_client's multiprocess mode was the alternative; it cannot
carry our custom collectors, such as the rolling tops, and loses per-process gauges.) A child that
does not answer is left out of that scrape and counted in
``streamer_supervisor_scrape_errors_total``.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from streamer.worker.supervisor import Child, Supervisor

log = logging.getLogger("streamer.supervisor")

#: Seconds a child may take to answer one scrape or /status request.
CHILD_TIMEOUT_S = 2.0
PROCESS_LABEL = "process"


def _get(host: str, port: int, path: str) -> bytes | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=CHILD_TIMEOUT_S) as resp:
            body: bytes = resp.read()
            return body
    except (OSError, urllib.error.URLError, ValueError):
        return None


class ChildrenCollector:
    """A prometheus_client collector: every running child's samples, labelled ``process``."""

    def __init__(self, supervisor: Supervisor, host: str, errors: Counter) -> None:
        self.supervisor = supervisor
        self.host = host
        self.errors = errors
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="scrape")

    def collect(self) -> Iterator[Metric]:
        children = [c for c in self.supervisor.children if c.state == "running" and c.metrics_port]
        texts = self._pool.map(lambda c: _get(self.host, c.metrics_port, "/metrics"), children)
        families: dict[str, Metric] = {}
        for child, body in zip(children, texts, strict=True):
            if body is None:
                self.errors.labels(str(child.index)).inc()
                continue
            self._merge(families, child, body.decode("utf-8", "replace"))
        yield from families.values()

    @staticmethod
    def _merge(families: dict[str, Metric], child: Child, text: str) -> None:
        label = str(child.index)
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = Metric(family.name, family.documentation, family.type, family.unit)
                families[family.name] = merged
            for s in family.samples:
                merged.add_sample(
                    s.name, {**s.labels, PROCESS_LABEL: label}, s.value, s.timestamp, s.exemplar
                )


class SupervisorMetrics:
    """The supervisor's registry: its own few series plus the children's, served on one port."""

    def __init__(self, supervisor: Supervisor, child_host: str) -> None:
        self.registry = CollectorRegistry()
        self.restarts = Counter(
            "streamer_supervisor_restarts",
            "Worker processes started again after they exited unasked.",
            [PROCESS_LABEL],
            registry=self.registry,
        )
        self.scrape_errors = Counter(
            "streamer_supervisor_scrape_errors",
            "Scrapes of a worker process's metrics that failed.",
            [PROCESS_LABEL],
            registry=self.registry,
        )
        running = Gauge(
            "streamer_supervisor_processes",
            "Worker processes running now.",
            registry=self.registry,
        )
        running.set_function(lambda: sum(1 for c in supervisor.children if c.state == "running"))
        self.registry.register(ChildrenCollector(supervisor, child_host, self.scrape_errors))

    def serve(self, host: str, port: int) -> int:
        if port == 0:
            return 0
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return int(server.server_port)


def _child_page(host: str, child: Child, path: str) -> Any:
    """A running child's JSON page (``/status``, ``/stats``); None when it is not running,
    does not answer, or answers no JSON."""
    body = _get(host, child.web_port, path) if child.state == "running" else None
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def supervisor_status(supervisor: Supervisor, host: str) -> dict[str, Any]:
    """What the supervisor's ``/status`` reports: itself, then each child with its own status."""
    children: list[dict[str, Any]] = []
    for child in supervisor.children:
        status = _child_page(host, child, "/status")
        children.append(
            {
                "process": child.index,
                "worker_id": child.worker_id,
                "pid": child.pid,
                "state": child.state,
                "restarts": child.restarts,
                "last_exit": child.last_exit,
                "started_at": child.started_at,
                "metrics_port": child.metrics_port,
                "web_port": child.web_port,
                "status": status,
            }
        )
    consumed = sum(int((c["status"] or {}).get("consumed", 0)) for c in children)
    assigned = sorted(a for c in children for a in (c["status"] or {}).get("assigned", []))
    return {
        "worker_id": supervisor.worker_id,
        "processes": len(children),
        "running": sum(1 for c in children if c["state"] == "running"),
        "stopping": supervisor.stopping,
        "consumed": consumed,
        "assigned": assigned,
        "children": children,
    }


def supervisor_stats(supervisor: Supervisor, host: str) -> dict[str, Any]:
    """What the supervisor's ``/stats`` reports: each running child's own ``/stats`` (the
    windows it holds; ``null`` for a child that does not answer)."""
    children: list[dict[str, Any]] = []
    for child in supervisor.children:
        stats = _child_page(host, child, "/stats")
        children.append({"process": child.index, "worker_id": child.worker_id, "stats": stats})
    return {"worker_id": supervisor.worker_id, "children": children}


#: The supervisor's JSON pages: path -> what it answers.
PAGES = {"/status": supervisor_status, "/stats": supervisor_stats}


def serve_status(supervisor: Supervisor, host: str, port: int) -> ThreadingHTTPServer | None:
    """``/status`` and ``/stats`` (JSON) on ``host:port`` in a thread; None when ``port`` is 0."""
    if port == 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            page = PAGES.get(self.path.split("?")[0].rstrip("/"))
            if page is None:
                self.send_error(404, "only /status and /stats here")
                return
            body = json.dumps(page(supervisor, host)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request is noise in a service log

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="status", daemon=True).start()
    return server
