"""The contributor's pre-commit hooks run exactly the static checks of ``deploy/dev.sh test``."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
#: The tools of the static checks, as dev.sh runs them (from the virtualenv on its PATH).
STATIC_TOOLS = ("ruff", "mypy")


def _dev_sh_static_checks() -> list[list[str]]:
    """The ruff and mypy command lines of dev.sh's ``test)`` branch, in order."""
    script = (ROOT / "deploy" / "dev.sh").read_text(encoding="utf-8")
    branch = re.search(r"^\s*test\)\n(.*?);;", script, re.M | re.S)
    assert branch, "deploy/dev.sh has no test) branch"
    commands = [shlex.split(line.split("#", 1)[0]) for line in branch.group(1).splitlines()]
    return [c for c in commands if c and c[0] in STATIC_TOOLS]


def _pre_commit_hooks() -> list[list[str]]:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    hooks = repo["hooks"]
    # the virtualenv's own tools (the pinned versions), whole-project runs as dev.sh does
    assert all(h["language"] == "system" and h["pass_filenames"] is False for h in hooks)
    commands = [shlex.split(h["entry"]) for h in hooks]
    assert all(c[0].startswith(".venv/bin/") for c in commands), commands
    return [[c[0].removeprefix(".venv/bin/"), *c[1:]] for c in commands]


def test_pre_commit_runs_the_static_checks_of_the_test_command() -> None:
    expected = [
        ["ruff", "check", "streamer", "tests"],
        ["ruff", "format", "--check", "streamer", "tests"],
        ["mypy"],
    ]
    assert _dev_sh_static_checks() == expected
    assert _pre_commit_hooks() == expected
