"""The proof of both Grafana dashboards: every panel's PromQL on a real Prometheus server.

A real ``streamer worker`` (the shipped provider and gateway rules) classifies the bundled
sample (with malformed messages mixed in, as the demo feeds it) from the real local Kafka
broker; a real Prometheus (Debian's ``prometheus``, on 127.0.0.1 with temporary storage) scrapes
it every second. Then each panel target of deploy/grafana/dashboards/*.json, and each query
variable, is evaluated through Prometheus' HTTP API with the template variables substituted the
way Grafana would: each must parse and return data. Grafana itself is not needed: it only sends
these queries. Each series selector of the alerting rules (deploy/prometheus/alerts.yml) must
return data too: the alerts read series the worker really exports, with the labels it gives them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from system_tools import require
from worker_harness import WorkerProcess, produce, wait_until

from streamer.config import shipped_rule_files
from streamer.devkit.demo import DemoInput
from streamer.devkit.prometheus import PrometheusServer, QueryError

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "streamer"
#: Grafana's own variables, as Grafana would fill them for a short time range.
BUILTINS = {"__rate_interval": "30s", "__interval": "1s", "__range": "5m"}

pytestmark = [pytest.mark.prometheus, pytest.mark.timeout(90)]


def _variables(dash: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dash["templating"]["list"]}


def _values(var: dict[str, Any]) -> list[str]:
    """The values a variable takes in a query: every option of a repeat variable, the regex of
    "All" for a multi-value query variable, its default otherwise."""
    if var["type"] == "custom":
        return [o["value"] for o in var["options"] if o["value"] != "$__all"]
    if var.get("includeAll"):
        return [var.get("allValue") or ".*"]
    return [var["current"]["value"]]


def _substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown variable ${name} in {expr}"
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def _expansions(expr: str, variables: dict[str, dict[str, Any]]) -> list[str]:
    """``expr`` with every variable substituted: one query per value of a repeat variable."""
    base = {**BUILTINS, "job": JOB}
    for name, var in variables.items():
        if name not in base and var["type"] != "datasource":
            base[name] = _values(var)[0]
    queries = []
    repeats = [n for n, v in variables.items() if v["type"] == "custom" and f"${n}" in expr]
    if not repeats:
        return [_substitute(expr, base)]
    for name in repeats:
        for value in _values(variables[name]):
            queries.append(_substitute(expr, {**base, name: value}))
    return queries


def _label_values(query: str) -> str:
    """Grafana's ``label_values(selector, label)`` as the PromQL that lists the same values."""
    m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
    assert m, query
    return f"count by ({m.group(2)}) ({m.group(1)})"


def _dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(what, PromQL) for every panel target and query variable, variables substituted."""
    dash = json.loads(path.read_text(encoding="utf-8"))
    variables = _variables(dash)
    out: list[tuple[str, str]] = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            for query in _expansions(target["expr"], variables):
                out.append((f"{path.name}: panel {panel['title']!r} {target['refId']}", query))
    for name, var in variables.items():
        if var["type"] == "query":
            raw = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            for query in _expansions(_label_values(raw), variables):
                out.append((f"{path.name}: variable ${name}", query))
    return out


def _alert_selectors() -> list[tuple[str, str]]:
    """(what, selector) for every distinct series selector of the alerting rules."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            for match in re.finditer(r"\b(?:up|streamer_\w+)(?:\{[^}]*\})?", rule["expr"]):
                out.setdefault(match.group(0), f"{ALERTS.name}: {rule['alert']} reads")
    return [(what, selector) for selector, what in out.items()]


def _has_number(result: list[Any]) -> bool:
    for sample in result:
        value = sample["value"][1] if isinstance(sample, dict) else sample[1]
        if not math.isnan(float(value)):
            return True
    return False


@pytest.fixture
def fed_worker(
    kafka_bootstrap: str, new_topic: Callable[..., str], tmp_path: Path
) -> Iterator[tuple[WorkerProcess, int]]:
    inp, out = new_topic(2), new_topic(2)
    # The provider and gateway rules only: the full shipped rules classify every line of the
    # bundled sample, and the rule-gap panels need Uncategorized responses to show.
    rules = [p for p in shipped_rule_files() if p.name.startswith(("providers-", "security-"))]
    extra = [arg for path in rules[1:] for arg in ("--files", str(path))]
    worker = WorkerProcess(
        kafka_bootstrap,
        tmp_path,
        name="w-dashboards",
        input_topic=inp,
        output_topic=out,
        group=f"g-{inp}",
        rules=rules[0],
        args=("--log-format", "text", *extra),
        # The deliverability counters rise at each stats flush, and the feed lasts ~2.5 s: with
        # the default 3 s a series could be born with all its records and never rise again,
        # which rate() reads as no traffic. A flush every second makes them rise while fed.
        env={"STREAMER_MAX_MESSAGE_BYTES": "262144", "STREAMER_STATS_FLUSH_INTERVAL": "1"},
    ).start()
    try:
        yield worker, len(DemoInput.build().messages)
    finally:
        worker.cleanup()


@pytest.mark.long
def test_every_panel_query_returns_data_from_a_real_prometheus(
    fed_worker: tuple[WorkerProcess, int], kafka_bootstrap: str, tmp_path: Path
) -> None:
    require("prometheus", package="prometheus")
    worker, n_messages = fed_worker
    worker.wait_assigned(timeout=45)
    target = f"127.0.0.1:{worker.metrics_port}"
    with PrometheusServer(tmp_path / "prometheus", [target], job=JOB) as prom:
        prom.wait_for(f'up{{job="{JOB}"}} == 1', timeout=15)
        # Fed after the first scrapes, paced over a few seconds: the counters rise between
        # scrapes, so rate() sees the traffic as Grafana would.
        produce(
            kafka_bootstrap,
            worker.cmd[worker.cmd.index("--input-topic") + 1],
            DemoInput.build().messages,
            rate=400,
        )
        wait_until(
            lambda: _scraped_total(prom) >= n_messages,
            timeout=40,
            what=f"Prometheus to see {n_messages} records consumed",
            interval=0.5,
        )
        # the deliverability series come from the stats flush after the records: wait for
        # its rule gaps to be scraped, then a couple more scrapes
        wait_until(
            lambda: bool(prom.query(f'streamer_rule_gaps{{job="{JOB}"}}')),
            timeout=20,
            what="Prometheus to see the rule gaps",
            interval=0.5,
        )
        scraped = _scrapes(prom)
        wait_until(lambda: _scrapes(prom) >= scraped + 2, 15, "two more scrapes", interval=0.2)
        results: list[str] = []
        failures: list[str] = []
        queries = [q for path in DASHBOARDS for q in _dashboard_queries(path)]
        for what, query in [*queries, *_alert_selectors()]:
            try:
                result = prom.query(query)
            except QueryError as exc:
                failures.append(f"{what}: does not evaluate: {exc}")
                continue
            if not result:
                failures.append(f"{what}: no data: {query}")
            elif not _has_number(result):
                failures.append(f"{what}: only NaN: {query}")
            else:
                results.append(f"{what}: {len(result)} series")
    report = tmp_path / "dashboard-queries.txt"
    report.write_text("\n".join(["FAILED:", *failures, "", "OK:", *results]) + "\n")
    print(f"{len(results)} queries returned data, {len(failures)} did not; see {report}")
    assert not failures, f"{len(failures)} dashboard queries failed:\n" + "\n".join(failures)
    assert len(results) >= 40


def _scrapes(prom: PrometheusServer) -> float:
    """Scrapes of the worker Prometheus has stored so far (one ``up`` sample each)."""
    result = prom.query(f'count_over_time(up{{job="{JOB}"}}[1h])')
    return float(result[0]["value"][1]) if result else 0.0


def _scraped_total(prom: PrometheusServer) -> float:
    result = prom.query(
        f'sum(streamer_events_in_total{{job="{JOB}"}}) '
        f'+ (sum(streamer_dlq_total{{job="{JOB}"}}) or vector(0))'
    )
    return float(result[0]["value"][1]) if result else 0.0
