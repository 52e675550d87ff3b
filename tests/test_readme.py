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
