"""The README is the user's reference: it must document every configuration key and command."""

from __future__ import annotations

import re
from pathlib import Path

from streamer.config import PROJECT_ROOT, Settings

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_has_exactly_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", quick, re.S)
    assert block is not None
    commands = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["deploy/dev.sh demo", "deploy/dev.sh test"]
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "deploy/dev.sh test" in ci


def test_every_setting_is_in_the_configuration_reference() -> None:
    reference = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in Settings.model_fields if f"`{name}`" not in reference]
    assert not missing, f"README configuration reference lacks: {missing}"


def test_every_cli_command_is_documented() -> None:
    from typer.main import get_command

    from streamer.cli import _register, app

    _register()
    group = get_command(app)
    names = list(group.commands)  # type: ignore[attr-defined]
    assert len(names) >= 8
    missing = [n for n in names if f"streamer {n}" not in README]
    assert not missing, f"README does not show: {missing}"


def test_linked_files_exist() -> None:
    for link in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (Path(PROJECT_ROOT) / link).exists(), link


def _section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_shipped_rule_counts_are_the_real_ones() -> None:
    from streamer.config import shipped_rule_files
    from streamer.rules import load_rules

    match = re.search(r"`rules/` holds our own rule set: (\d+) files, about (\d+) patterns", README)
    assert match, "README: the shipped rules sentence changed; keep its numbers checked"
    files = shipped_rule_files()
    patterns = len(load_rules(files).rules)
    assert int(match.group(1)) == len(files)
    stated = int(match.group(2))
    assert abs(patterns - stated) <= 0.05 * patterns, (
        f"README says about {stated} shipped patterns, there are {patterns}"
    )


def test_metrics_table_lists_exactly_the_exported_metrics() -> None:
    from prometheus_client import generate_latest

    from streamer.metrics import Metrics
    from streamer.redis_mirror import MirrorMetrics

    registry = Metrics().registry
    MirrorMetrics(registry)  # a worker with suppressions_redis_url serves them too
    exposition = generate_latest(registry).decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))
    table = _section("Metrics and logs")
    documented = {
        name.removesuffix("_total") for name in re.findall(r"`(streamer_[a-z0-9_]+)", table)
    }
    ours = {
        name.removesuffix("_total")
        for name in exported
        if name.startswith("streamer_") and not name.endswith("_created")  # a counter's birth
    }
    assert ours == documented, (
        f"undocumented: {sorted(ours - documented)}; gone: {sorted(documented - ours)}"
    )
    for prefix in ("process_", "python_gc_"):
        assert any(n.startswith(prefix) for n in exported)
        assert f"`{prefix}*`" in table


def test_every_test_tier_is_documented_with_how_to_run_it() -> None:
    import tomllib

    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    markers = [m.split(":", 1)[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]]
    assert set(markers) == {"kafka", "secure", "prometheus", "browser", "packaging"}
    development = _section("Development")
    missing = [m for m in markers if f"-m {m}" not in development]
    assert not missing, f"README Development does not say how to run: {missing}"
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "export CI=true" in ci and "--durations=" in ci
