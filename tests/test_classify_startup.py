"""``streamer classify``'s lean start (``streamer.offline.startup``): a new process, as a user
runs it, keeps its settings and parsed rules for the next run with the same inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.offline import startup

FIXTURES = Path(__file__).parent / "fixtures"
#: Runs ``streamer ARGS`` like the console script, then says whether the settings were built.
SCRIPT = """
import sys
from streamer.cli import main
sys.argv = ["streamer", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
print(f"settings built: {'pydantic_settings' in sys.modules}", file=sys.stderr)
sys.exit(code)
"""


def _classify(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    clean["STREAMER_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, "classify", "--lines", *args],
        input=b"550 user unknown\n552 mailbox full\nnothing\n",
        capture_output=True,
        env={**clean, **(env or {})},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )


def test_a_second_start_builds_no_settings_and_writes_the_same(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_bytes((FIXTURES / "basic.toml").read_bytes())
    first = _classify(tmp_path, "--rules", str(rules))
    second = _classify(tmp_path, "--rules", str(rules))
    assert first.returncode == second.returncode == 0, first.stderr
    assert b"settings built: True" in first.stderr
    assert b"settings built: False" in second.stderr
    assert second.stdout == first.stdout and b'"label":"InvalidRecipient"' in first.stdout
    entries = list((tmp_path / "cache" / startup.FOLDER).glob("*.pickle"))
    assert len(entries) == 3  # the variables' warnings, the settings, the rules

    # a changed rule file is a miss: its new label, not the remembered one
    rules.write_text('[rules]\nQuotaIssues = ["user unknown"]\n')
    third = _classify(tmp_path, "--rules", str(rules))
    assert third.returncode == 0, third.stderr
    assert b'"line":"550 user unknown","label":"QuotaIssues"' in third.stdout


def test_settings_that_change_are_read_again(tmp_path: Path) -> None:
    rules = str(FIXTURES / "basic.toml")
    assert _classify(tmp_path, env={"STREAMER_FILES": f'["{rules}"]'}).returncode == 0
    config = tmp_path / "streamer.toml"
    config.write_text("[classifier]\ncache_size = -1\n")
    bad = _classify(tmp_path, env={"STREAMER_FILES": f'["{rules}"]', "STREAMER_CONFIG": "x"})
    assert bad.returncode == 2 and b"x: config file not found" in bad.stderr
    bad = _classify(tmp_path, env={"STREAMER_CONFIG": str(config)})
    assert bad.returncode == 2 and b"configuration error" in bad.stderr, bad.stderr
    config.write_text("")  # fixed: the same name, other bytes
    assert _classify(tmp_path, env={"STREAMER_CONFIG": str(config)}).returncode == 0


def test_entries_others_may_write_are_not_read(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    entry = folder / "k.pickle"
    startup._write(folder, entry, {"a": 1})
    assert startup._read(folder, entry) == {"a": 1}
    entry.chmod(0o666)
    assert startup._read(folder, entry) is None
    entry.chmod(0o600)
    folder.chmod(0o777)
    assert startup._read(folder, entry) is None


def test_at_most_keep_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(startup, "KEEP", 3)
    for i in range(5):
        startup._write(tmp_path, tmp_path / f"{i}.pickle", i)
    assert len(list(tmp_path.glob("*.pickle"))) == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_the_command_is_found_after_the_global_options() -> None:
    from streamer.cli import _command, config_first

    assert _command(config_first(["classify", "--config", "x.toml", "--lines"])) == "classify"
    assert _command(["-c", "x.toml", "validate", "r.toml"]) == "validate"
    assert _command(["--version"]) is None
    assert _command([]) is None
