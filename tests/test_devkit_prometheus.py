"""streamer.devkit.prometheus against the real ``prometheus`` and ``promtool`` binaries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, start_http_server
from system_tools import require

from streamer.devkit.broker import free_port
from streamer.devkit.prometheus import (
    PrometheusServer,
    QueryError,
    check_config,
    render_config,
)

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(90)]


@pytest.fixture(autouse=True)
def _prometheus_installed() -> None:
    require("prometheus", "promtool", package="prometheus")


@pytest.fixture
def exporter() -> Iterator[tuple[str, Counter]]:
    """A tiny metrics endpoint on 127.0.0.1 with one counter."""
    registry = CollectorRegistry()
    counter = Counter("devkit_test_events", "events", ["kind"], registry=registry)
    counter.labels(kind="a").inc(3)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    yield f"127.0.0.1:{port}", counter
    server.shutdown()
    thread.join(5)


def test_generated_config_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render_config(["127.0.0.1:9464", "127.0.0.1:9465"], job="workers"))
    assert "SUCCESS" in check_config(path)


def test_promtool_refuses_a_broken_config(tmp_path: Path) -> None:
    from streamer.devkit.prometheus import PrometheusError

    path = tmp_path / "prometheus.yml"
    path.write_text(render_config(["127.0.0.1:9464"]).replace('"1000ms"', '"soon"'))
    with pytest.raises(PrometheusError, match="soon"):
        check_config(path)


def test_server_scrapes_targets_and_answers_queries(
    tmp_path: Path, exporter: tuple[str, Counter]
) -> None:
    target, counter = exporter
    with PrometheusServer(tmp_path / "prom", [target], job="myjob") as prom:
        assert prom.url.startswith("http://127.0.0.1:")
        (sample,) = prom.wait_for('devkit_test_events_total{job="myjob"}', timeout=20)
        assert sample["metric"]["kind"] == "a"
        assert sample["metric"]["instance"] == target
        assert float(sample["value"][1]) == 3.0
        assert prom.targets_up() == {f"http://{target}/metrics": "up"}
        counter.labels(kind="b").inc()
        prom.wait_for('devkit_test_events_total{kind="b"}', timeout=10)
        # parses but matches nothing: an empty result, not an error
        assert prom.query('devkit_test_events_total{kind="zzz"}') == []
        assert prom.query("1 + 1")[0][1] == "2"
        with pytest.raises(QueryError, match="bad_data"):
            prom.query("sum(rate(devkit_test_events_total[1m])")
        proc = prom.proc
    assert proc is not None and proc.poll() is not None  # stopped on exit
