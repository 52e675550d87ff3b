"""The README and the documentation site (docs/, mkdocs.yml) are the user's reference: the README
shows the two tested commands and stays short; the site documents every setting, command,
metric and test tier, and states the real rule counts. The configuration and CLI references are
generated (streamer.devkit.reference); these tests pin what the generator produces and what the
hand-written pages must say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamer.config import PROJECT_ROOT, Settings, env_var
from streamer.devkit import reference

README = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
DOCS = PROJECT_ROOT / "docs"


def _page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def _section(text: str, title: str) -> str:
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


# --- the README -----------------------------------------------------------------------------


def test_quick_start_has_exactly_the_two_commands() -> None:
    quick = _section(README, "Quick start")
    block = re.search(r"```sh\n(.*?)```", quick, re.S)
    assert block is not None
    commands = [ln.split("#", 1)[0].strip() for ln in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["deploy/dev.sh demo", "deploy/dev.sh test"]
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "deploy/dev.sh test" in ci


def test_readme_is_short() -> None:
    assert len(README.splitlines()) <= 150


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", README)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        assert (PROJECT_ROOT / link).exists(), link


def test_the_test_command_builds_the_site_strictly_and_docs_serves_it_on_loopback() -> None:
    dev = (PROJECT_ROOT / "deploy" / "dev.sh").read_text(encoding="utf-8")
    test_branch = dev.split("    test)", 1)[1].split(";;", 1)[0]
    assert "mkdocs build --strict" in test_branch
    assert test_branch.index("mkdocs build") < test_branch.index("pytest")
    assert "mkdocs serve --dev-addr 127.0.0.1:8000" in dev


# --- generated references -------------------------------------------------------------------


def test_every_setting_is_in_the_configuration_reference() -> None:
    assert reference.CONFIGURATION_MARKER in _page("reference/configuration.md")
    rows = {
        m.group(1): line
        for line in reference.configuration_markdown().splitlines()
        if (m := re.match(r"\| `([a-z0-9_]+)` \|", line))
    }
    assert list(rows) == list(Settings.model_fields)
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name}: no description for the configuration reference"
        assert f"`{env_var(name)}`" in rows[name]


def test_configuration_reference_rows_say_the_real_defaults() -> None:
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in reference.configuration_markdown().splitlines()[2:]
    }
    assert rows["`bootstrap`"][0] == "`STREAMER_BOOTSTRAP`, `KAFKA_BOOTSTRAP`"
    assert rows["`bootstrap`"][2] == "unset"
    assert rows["`back_pressure`"][2] == "`10000`, from `memory_budget_mb`"
    assert rows["`memory_budget_mb`"][1] == "int, ≥ 150"
    assert rows["`stats_flush_interval`"][1:3] == ["float, > 0, ≤ 60", "`3.0`"]
    assert rows["`log_format`"][1] == "`text` / `json`"
    assert rows["`files`"][1:3] == ["list (env: JSON list)", "the shipped rules"]
    assert rows["`suppress_evidence`"][2] == '`["wording", "enhanced-code"]`'
    assert rows["`exactly_once`"][2] == "`false`"


def test_every_cli_command_is_documented() -> None:
    from typer.main import get_command

    from streamer.cli import _register, app

    _register()
    group = get_command(app)
    names = list(group.commands)  # type: ignore[attr-defined]
    assert len(names) >= 8
    page = _page("reference/cli.md")
    assert reference.CLI_MARKER in page
    overview = _section(page, "Commands")
    missing = [n for n in names if f"`streamer {n}" not in overview]
    assert not missing, f"docs/reference/cli.md's overview does not show: {missing}"
    generated = reference.cli_markdown()
    missing = [n for n in names if f"streamer {n}" not in generated]
    assert not missing, f"the generated CLI reference lacks: {missing}"
    assert "--exactly-once" in generated and "--processes" in generated


# --- facts the hand-written pages state ----------------------------------------------------


def test_shipped_rule_counts_are_the_real_ones() -> None:
    from streamer.config import shipped_rule_files
    from streamer.rules import load_rules

    text = _page("rules.md")
    match = re.search(r"`rules/` holds our own rule set: (\d+) files, about (\d+) patterns", text)
    assert match, "docs/rules.md: the shipped rules sentence changed; keep its numbers checked"
    files = shipped_rule_files()
    patterns = len(load_rules(files).rules)
    assert int(match.group(1)) == len(files)
    stated = int(match.group(2))
    assert abs(patterns - stated) <= 0.05 * patterns, (
        f"docs/rules.md says about {stated} shipped patterns, there are {patterns}"
    )


def test_metrics_table_lists_exactly_the_exported_metrics() -> None:
    from prometheus_client import generate_latest

    from streamer.metrics import Metrics
    from streamer.redis_mirror import MirrorMetrics

    registry = Metrics().registry
    MirrorMetrics(registry)  # a worker with suppressions_redis_url serves them too
    exposition = generate_latest(registry).decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))
    table = _page("operations/metrics.md")
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
    assert set(markers) == {"kafka", "secure", "prometheus", "browser", "packaging", "long"}
    development = _section(_page("contributing.md"), "Development")
    missing = [m for m in markers if f"-m {m}" not in development]
    assert not missing, f"docs/contributing.md Development does not say how to run: {missing}"
    ci = (PROJECT_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "export CI=true" in ci and "--durations=" in ci


def test_every_page_is_in_the_navigation() -> None:
    import yaml

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for value in nav.values() for p in pages(value)]
        return []

    config = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    listed = pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    assert Path(config["hooks"][0]).exists() or (PROJECT_ROOT / config["hooks"][0]).exists()


# --- the pages' snippets ------------------------------------------------------------------


def _blocks(language: str) -> list[tuple[str, str]]:
    """Every fenced ``language`` block of the README and of the site's own pages (not the
    files they include)."""
    found = []
    for page in [PROJECT_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for block in re.findall(rf"```{language}\n(.*?)```", text, re.S):
            found.append((str(page.relative_to(PROJECT_ROOT)), block))
    return found


def test_python_snippets_run_and_say_what_they_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(PROJECT_ROOT)  # snippets name files as a checkout has them
    blocks = _blocks("python")
    assert blocks
    for page, block in blocks:
        namespace: dict[str, object] = {}
        for line in block.splitlines():
            code, _, said = line.partition("  # ")
            if said.startswith("'") and not code.startswith((" ", "from ", "import ")):
                assert repr(eval(code, namespace)) == said, (page, line)
            elif code.strip():
                exec(code, namespace)


def test_toml_snippets_are_valid_configuration(tmp_path: Path) -> None:
    from streamer.config import load_settings

    blocks = _blocks("toml")
    assert blocks
    for page, block in blocks:
        config = tmp_path / "streamer.toml"
        config.write_text(block, encoding="utf-8")
        settings = load_settings(config)  # an unknown key or bad value raises ConfigError
        assert settings.bootstrap, page


def test_shell_snippets_name_real_commands() -> None:
    from typer.main import get_command

    from streamer.cli import _register, app

    _register()
    group = get_command(app)
    commands = set(group.commands)  # type: ignore[attr-defined]
    options = {"--config", "-c", "--version", "--help", "--install-completion"}
    used = [
        (page, word)
        for page, block in _blocks("sh")
        for word in re.findall(r"(?:^|[|;&(]\s*)streamer\s+(\S+)", block, re.M)
    ]
    assert len(used) >= 20
    unknown = [(page, w) for page, w in used if w not in commands and w not in options]
    assert not unknown, unknown
