"""The alerting rules (deploy/prometheus/alerts.yml) under Debian's real ``promtool``, and their
Kubernetes copy (deploy/k8s/prometheusrule.yaml), which must stay equal to them.

``promtool check rules`` validates every rule; ``promtool test rules`` runs
deploy/prometheus/alerts_test.yml, whose synthetic series make every alert fire with its exact
labels and annotations, and stay silent below its threshold and below its volume guard. Those
series are named and labelled as a real :class:`streamer.metrics.Metrics` exports them (checked
here too), so the rules test against what the worker really serves. Without ``promtool`` the
promtool tests skip naming the package to install, except on CI (``CI=true``), where they fail.

Run as a script with ``--write-prometheusrule`` to regenerate deploy/k8s/prometheusrule.yaml
after editing alerts.yml.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from system_tools import require

from streamer.analytics.batch import Folded
from streamer.devkit.prometheus import check_config
from streamer.metrics import Metrics
from streamer.pipeline import BatchStats

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
PROMETHEUSRULE = ROOT / "deploy" / "k8s" / "prometheusrule.yaml"
ALERTS_DOC = ROOT / "docs" / "operations" / "alerts.md"
SEVERITIES = ("critical", "warning", "info")
#: Where every alert's runbook_url points: the documentation page with the table of alerts.
RUNBOOK = "docs/operations/alerts.md"
#: Labels Prometheus adds to every scraped series (not the worker's own).
TARGET_LABELS = {"job", "instance"}


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _load(ALERTS)["groups"] for rule in group["rules"]]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    require("promtool", package="prometheus")
    # relative paths, run where the files are: the output names them as a user would see them
    return subprocess.run(
        ["promtool", *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_check_rules_accepts_every_rule() -> None:
    done = _promtool("check", "rules", ALERTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout, done.stdout


def test_promtool_unit_tests_of_every_alert_pass() -> None:
    done = _promtool("test", "rules", ALERTS_TEST.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["Unit", "Testing:", ALERTS_TEST.name, "SUCCESS"], done.stdout


def test_prometheus_config_loads_the_alerts() -> None:
    require("promtool", package="prometheus")
    output = check_config(PROMETHEUS_CONFIG)
    assert "SUCCESS: 1 rule files found" in output, output
    assert f"SUCCESS: {len(_rules())} rules found" in output, output
    assert _load(PROMETHEUS_CONFIG)["rule_files"] == [ALERTS.name]


# --- the rules and their tests -------------------------------------------------------------------


def test_every_alert_has_for_severity_summary_description_and_runbook() -> None:
    rules = _rules()
    assert len(rules) >= 12
    names = {rule["alert"] for rule in rules}
    for rule in rules:
        name = rule["alert"]
        assert name.startswith("Streamer"), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), f"{name}: for: {rule.get('for')}"
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == RUNBOOK, name
    # one name per condition; only the complaint rate has two severities (warning, critical)
    pairs = [(rule["alert"], rule["labels"]["severity"]) for rule in rules]
    assert len(set(pairs)) == len(pairs)
    assert len(names) == len(rules) - 1
    groups = [group["name"] for group in _load(ALERTS)["groups"]]
    assert groups == ["streamer-worker", "streamer-deliverability"]


def test_alerts_name_what_they_are_about() -> None:
    """The summary or description names the instance, partition, provider, tenant, reason or
    template an alert is about: every label the expression keeps, except ``job`` and those a
    matcher fixes to one value (``dimension="provider"``: the text says "provider")."""
    for rule in _rules():
        text = rule["annotations"]["summary"] + rule["annotations"]["description"]
        kept = re.findall(r"\bby \(([^)]*)\)", rule["expr"])
        labels = {label.strip() for group in kept[:1] for label in group.split(",")}
        fixed = set(re.findall(r'(\w+)="', rule["expr"]))
        for label in labels - fixed - {"job"}:
            assert f"$labels.{label}" in text, f"{rule['alert']}: no {label} in its annotations"


def test_every_alert_is_tested_firing_and_silent() -> None:
    tests = _load(ALERTS_TEST)
    assert tests["rule_files"] == [ALERTS.name]
    fired: set[tuple[str, str]] = set()
    silent: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            if not check["exp_alerts"]:
                silent.add(check["alertname"])
            for alert in check["exp_alerts"]:
                # the exact labels and the exact annotations, never just "some alert"
                assert set(alert["exp_annotations"]) == {"summary", "description", "runbook_url"}
                fired.add((check["alertname"], alert["exp_labels"]["severity"]))
    expected = {(rule["alert"], rule["labels"]["severity"]) for rule in _rules()}
    assert fired == expected
    assert silent == {name for name, _severity in expected}


def _exported_labels() -> dict[str, set[str]]:
    """Sample name -> label names, as a real worker's registry exports them, every labelled
    metric fed through the methods the worker calls."""
    m = Metrics()
    m.record_batch(
        BatchStats(
            events_in=Counter({"Bounce": 1}),
            events_out=Counter({("Bounce", "InvalidRecipient"): 1}),
            dlq=Counter({"invalid_json": 1}),
        )
    )
    m.set_lag({("kumomta.logs", 0): 5})
    m.set_rules_version("a1b2c3")
    folded = Folded()
    key = (0, "gmail", "pool-a", "ip-1", "acme")
    folded.add(key, 2)
    folded.count(key, "Bounce", "Uncategorized", "undetermined", 1)
    folded.count(key, "Delivery", None, None, 1)
    folded.gaps["550 5.7.1 <*> rejected"] = 1
    m.deliverability.record(folded)
    gaps = m.deliverability.rule_gaps
    gaps.clock = lambda: gaps._bucket_start + gaps.width  # one bucket later: exported
    assert gaps.refresh()
    exported: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(generate_latest(m.registry).decode()):
        for sample in family.samples:
            exported.setdefault(sample.name, set()).update(sample.labels)
    return exported


def test_test_series_are_named_and_labelled_as_the_worker_exports_them() -> None:
    exported = _exported_labels()
    seen = set()
    for case in _load(ALERTS_TEST)["tests"]:
        for series in case["input_series"]:
            match = re.fullmatch(r"(\w+)\{(.*)\}", series["series"])
            assert match, series["series"]
            name, labels = match.group(1), set(re.findall(r"(\w+)=", match.group(2)))
            assert labels >= TARGET_LABELS, series["series"]
            if name == "up":  # Prometheus' own, per target
                continue
            assert name in exported, f"{name}: the worker exports no such series"
            assert labels - TARGET_LABELS == exported[name], series["series"]
            seen.add(name)
    used = {m for rule in _rules() for m in re.findall(r"\bstreamer_\w+", rule["expr"])}
    assert used == seen, "every metric an alert reads is in the tests, and nothing else"


# --- documentation -------------------------------------------------------------------------------


def test_docs_document_every_alert() -> None:
    section = ALERTS_DOC.read_text(encoding="utf-8")
    rows = [row.split("|") for row in section.splitlines() if row.startswith("| `Streamer")]
    # one row per alert and severity: name, severity, meaning, threshold, what to do
    documented = [(cells[1].strip().strip("`"), cells[2].strip()) for cells in rows]
    assert documented == [(rule["alert"], rule["labels"]["severity"]) for rule in _rules()]
    assert all(len(cells) == 7 and all(c.strip() for c in cells[1:-1]) for cells in rows)
    # the thresholds, windows and waits the table states are the rules' own
    for cells, rule in zip(rows, _rules(), strict=True):
        stated = cells[4]
        assert f"for {rule['for']}" in stated, (rule["alert"], stated)
        for window in re.findall(r"\[(\d+[smhd])\]", rule["expr"]):
            assert window in stated, (rule["alert"], window, stated)
        for number in re.findall(r"(?:>|>=|==)\s*([\d.]+)", rule["expr"]):
            value = float(number)
            if 0 < value < 1:
                assert f"{value * 100:g}%" in stated, (rule["alert"], number, stated)
            elif value > 1:
                assert number in stated, (rule["alert"], number, stated)
    for doc in ("alerts.yml", "alerts_test.yml", "prometheusrule.yaml"):
        assert doc in section, doc


# --- Kubernetes ----------------------------------------------------------------------------------

PROMETHEUSRULE_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yml by
#   python tests/test_alerts_promtool.py --write-prometheusrule
# Edit alerts.yml and regenerate: tests/test_alerts_promtool.py fails while the two differ.
#
# The streamer alerting rules (docs/operations/alerts.md) for the Prometheus Operator. Like
# servicemonitor.yaml it needs the operator's CRDs, so it is not in kustomization.yaml; apply it
# separately:
#   kubectl apply -n streamer -f deploy/k8s/prometheusrule.yaml
# Prometheus loads it when its ruleSelector matches these labels; kube-prometheus-stack selects
# `release: <its Helm release>` by default: add that label
# (kubectl label -n streamer prometheusrule streamer-alerts release=<release>).
"""


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the PromQL expressions) as literal blocks, as in alerts.yml."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def render_prometheusrule() -> str:
    """deploy/k8s/prometheusrule.yaml: alerts.yml's groups in a PrometheusRule."""
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "streamer-alerts",
            "labels": {
                "app.kubernetes.io/name": "streamer",
                "app.kubernetes.io/component": "alerts",
            },
        },
        "spec": {"groups": _load(ALERTS)["groups"]},
    }
    body = yaml.dump(rule, Dumper=_BlockDumper, sort_keys=False, width=100, allow_unicode=True)
    return PROMETHEUSRULE_HEADER + body


def test_k8s_prometheusrule_has_the_groups_of_alerts_yml() -> None:
    (rule,) = [d for d in yaml.safe_load_all(PROMETHEUSRULE.read_text(encoding="utf-8")) if d]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == _load(ALERTS)["groups"], (
        "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/alerts.yml: run "
        "python tests/test_alerts_promtool.py --write-prometheusrule"
    )
    assert PROMETHEUSRULE.read_text(encoding="utf-8") == render_prometheusrule()


def test_k8s_prometheusrule_is_valid_for_promtool(tmp_path: Path) -> None:
    """What the operator hands Prometheus (spec, as a rules file) passes ``promtool``."""
    (rule,) = [d for d in yaml.safe_load_all(PROMETHEUSRULE.read_text(encoding="utf-8")) if d]
    rules_file = tmp_path / "prometheusrule-spec.yml"
    rules_file.write_text(yaml.safe_dump(rule["spec"]), encoding="utf-8")
    done = _promtool("check", "rules", str(rules_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout, done.stdout


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-prometheusrule"]:
        PROMETHEUSRULE.write_text(render_prometheusrule(), encoding="utf-8")
        print(f"wrote {PROMETHEUSRULE.relative_to(ROOT)}")
    else:
        sys.exit(f"usage: {sys.argv[0]} --write-prometheusrule")
