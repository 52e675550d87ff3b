"""``streamer report`` rendered by a real browser: headless Chromium (Debian's ``chromium``).

The report is generated from the bundled sample (classified with the shipped provider rules
only, so that rule gaps exist), opened from disk with the network unreachable for the
page (everything is inline), and every chart must have rendered an SVG with marks in it. A
screenshot is kept in the test's tmp dir and copied to var/artifacts/report.png.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from system_tools import chromium, require

from streamer.classifier import Classifier
from streamer.config import shipped_rule_files
from streamer.devkit.sample import bundled_sample_path
from streamer.inputs import expand_inputs
from streamer.report import Tables, read_inputs, tables

ROOT = Path(__file__).resolve().parent.parent
ARTIFACT = ROOT / "var" / "artifacts" / "report.png"
CHARTS = (
    "label-mix",
    "rates",
    "categories",
    "breakdown-tenant",
    "breakdown-egress_pool",
    "breakdown-egress_source",
    "rules",
    "gaps",
)
#: The sections without a chart: tables the report computes (numbers pinned in test_report.py).
TABLES = (
    "comparison-table",
    "complaints-table",
    "reasons-table",
    "breakdown-tenant-table",
    "breakdown-egress_pool-table",
    "breakdown-egress_source-table",
)

pytestmark = pytest.mark.timeout(120)


def _chromium(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # the page must not need the network: send every request nowhere
    offline = ("--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>")
    return chromium(*offline, "--virtual-time-budget=10000", *args, timeout=timeout)


RULES = [p for p in shipped_rule_files() if p.name.startswith(("providers-", "security-"))]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    rules = RULES
    cmd = [sys.executable, "-c", "from streamer.cli import main; main()", "report"]
    # the sample spans 4.5 minutes: the last 2 of them, compared with the 2 before
    cmd += [str(bundled_sample_path()), "-o", str(out), "--period", "2m"]
    for path in rules:
        cmd += ["--rules", str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out.resolve())
    return out


def test_report_is_self_contained(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    # no script, stylesheet or image is loaded from anywhere
    assert not re.search(r"<script[^>]+src=", page)
    assert not re.search(r"<link[^>]+href=", page)
    assert "vegaEmbed" in page and "cdn.jsdelivr" not in page
    for cid in CHARTS:
        assert f'id="chart-{cid}"' in page
    for tid in TABLES:
        assert f'<table id="{tid}">' in page


@pytest.mark.browser
def test_every_chart_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    require("chromium", package="chromium")
    done = _chromium("--dump-dom", report.as_uri())
    dom = done.stdout
    assert "<body" in dom, done.stderr[-2000:]
    for cid in CHARTS:
        m = re.search(
            rf'<div[^>]*id="chart-{cid}"[^>]*>(.*?)</div>\s*(?:<h2|<table|<script)', dom, re.S
        )
        assert m, f"chart {cid}: container missing from the rendered DOM"
        inner = m.group(1)
        assert "data-error" not in m.group(0), f"chart {cid}: {m.group(0)[:500]}"
        assert "<svg" in inner, f"chart {cid}: no svg rendered"
        marks = len(re.findall(r'<path[^>]+d="M', inner))
        assert marks >= 2, f"chart {cid}: the svg has no marks"
    assert re.search(r'<ul class="summary" id="summary">\s*<li>', dom)
    assert dom.count("<tr>") >= 2  # the rule gaps table with examples
    for tid in TABLES:
        assert f'<table id="{tid}">' in dom, tid
    # every bar carries its count: the text marks hold exactly the counts the tables hold
    t = _tables()
    categories = [str(c["records"]) for c in t.categories]
    assert _text_marks(dom, "categories") == categories
    tenants = sorted(t.breakdowns["tenant"].values(), key=lambda g: -g.total)
    assert _text_marks(dom, "breakdown-tenant") == [str(g.total) for g in tenants]

    shot = tmp_path / "report.png"
    done = _chromium(
        "--hide-scrollbars", "--window-size=1200,3000", f"--screenshot={shot}", report.as_uri()
    )
    assert shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)


def _tables() -> Tables:
    """The report's tables of what the ``report`` fixture rendered."""
    data = read_inputs(
        expand_inputs([str(bundled_sample_path())]), Classifier.from_files([str(p) for p in RULES])
    )
    data.period_s = 120
    return tables(data)


def _text_marks(dom: str, cid: str) -> list[str]:
    """The texts of a chart's text marks (not its axes or legend), in drawing order."""
    chart = dom[dom.index(f'id="chart-{cid}"') :]
    chart = chart[: chart.index("</svg>")]
    group = re.search(r'<g class="mark-text role-mark[^"]*"[^>]*>(.*?)</g>', chart, re.S)
    assert group, f"chart {cid}: no text marks"
    return re.findall(r">([^<]+)</text>", group.group(1))
