"""Configuration errors are one line naming the setting, exit status 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamer.cli import _register, app
from streamer.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
_register()


pytestmark = pytest.mark.usefixtures("clean_env")  # conftest: no STREAMER_* leaks in


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("var", "value", "shape"),
    [
        ("STREAMER_FILES", "rules.toml", "a JSON list"),
        ("STREAMER_FILES", "[broken", "a JSON list"),
        ("STREAMER_KAFKA_EXTRA", "{'a': 1}", "a JSON object"),
        ("STREAMER_KAFKA_EXTRA", "client.id=x", "a JSON object"),
    ],
)
def test_non_json_environment_names_the_variable(
    var: str, value: str, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError, match=rf"^{var}: not valid JSON.*{shape}"):
        load_settings()
    for command in (["validate"], ["explain", "550 x"], ["topics", "list"]):
        res = runner.invoke(app, command)
        assert res.exit_code == 2, (command, res.output)
        line = _one_line(res.stderr)
        assert line.startswith(f"configuration error: {var}: not valid JSON"), line


def test_bad_toml_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("input_topic = \n[kafka\n")
    for command in (["validate"], ["classify", "--lines"], ["worker"], ["kafka", "status"]):
        res = runner.invoke(app, ["--config", str(bad), *command], input="")
        assert res.exit_code == 2, (command, res.output)
        line = _one_line(res.stderr)
        assert line.startswith(f"configuration error: {bad}: invalid TOML"), line


def test_invalid_values_are_one_line_naming_each_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_METRICS_PORT", "ninety")
    monkeypatch.setenv("STREAMER_CACHE_SIZE", "-1")
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 2
    line = _one_line(res.stderr)
    assert "metrics_port (from STREAMER_METRICS_PORT): Input should be a valid integer" in line
    assert "cache_size (from STREAMER_CACHE_SIZE): Input should be greater than" in line


def test_real_process_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["STREAMER_KAFKA_EXTRA"] = "not json"
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "validate"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert _one_line(proc.stderr).startswith("configuration error: STREAMER_KAFKA_EXTRA")


@pytest.mark.parametrize("processes", ["1", "2"])
def test_kafka_not_answering_is_one_line_exit_75(tmp_path: Path, processes: str) -> None:
    """No broker at the address: one line, and EX_TEMPFAIL (try again later), which a supervisor
    retries without counting a crash."""
    from streamer.devkit.broker import free_port

    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "worker", "-b", address, "--processes", processes,
         "--metrics-port", "0", "--web-port", "0", "--state-dir", str(tmp_path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 75, proc.stderr
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("kafka:")]
    assert line == [f"kafka: Kafka at {address} does not answer: nothing accepts connections"]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'files = "rules.toml"\n', "files: must be a list of file names"),
        (b"files = 5\n", "files: must be a list of file names"),
        (b"category_files = [5]\n", "category_files: must be a list of file names"),
        (b'input_topic = "\xff"\n', "config file is not UTF-8 text"),
        (None, "cannot read the config file: Is a directory"),
        (b'log_level = "LOUD"\n', "toml): 'LOUD' is no log level; use one of DEBUG"),
    ],
    ids=["files-string", "files-number", "files-list-of-numbers", "not-utf8", "folder", "level"],
)
def test_a_config_file_of_the_wrong_shape_is_one_line_exit_2(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    config = tmp_path / "streamer.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)
    for command in (["validate"], ["classify", "--lines"], ["worker"]):
        res = runner.invoke(app, ["--config", str(config), *command], input="")
        assert res.exit_code == 2, (command, res.output)
        line = _one_line(res.stderr)
        assert line.startswith("configuration error: ") and message in line, line


def test_log_levels_are_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMER_LOG_LEVEL", "debug")
    assert load_settings().log_level == "DEBUG"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (None, "missing.toml: file not found"),
        (b'[labels.X]\ncategory = "weird"\n', "labels.X.category: 'weird' is not a category"),
    ],
    ids=["missing", "bad-category"],
)
def test_a_bad_category_file_is_one_line_exit_2_for_every_command(
    tmp_path: Path, table: bytes | None, message: str
) -> None:
    name = "missing.toml" if table is None else "local-categories.toml"
    if table is not None:
        (tmp_path / name).write_bytes(table)
    config = tmp_path / "streamer.toml"
    config.write_text(f'category_files = ["{name}"]\n')
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"type":"Bounce","id":"1","response":{"code":550,"content":"no such user"}}\n')
    commands = (
        ["classify", "--summary", str(logs)],
        ["report", str(logs), "-o", str(tmp_path / "r.html")],
        ["worker", "-b", "127.0.0.1:9"],
    )
    for command in commands:
        res = runner.invoke(app, ["--config", str(config), *command])
        assert res.exit_code == 2, (command, res.output)
        line = _one_line(res.stderr)
        assert line.startswith("configuration error: ") and message in line, line


def test_the_configured_categories_serve_classify_summary_too(tmp_path: Path) -> None:
    """One configuration for every command: a local categories file changes the summary's
    categories as it changes the worker's."""
    import json

    (tmp_path / "local.toml").write_text('[labels.InvalidRecipient]\ncategory = "admin"\n')
    config = tmp_path / "streamer.toml"
    config.write_text('category_files = ["local.toml"]\n')
    logs = tmp_path / "logs.jsonl"
    logs.write_text('{"type":"Bounce","id":"1","response":{"code":550,"content":"no such user"}}\n')
    plain = runner.invoke(app, ["classify", "--summary", "--json", str(logs)])
    local = runner.invoke(
        app, ["--config", str(config), "classify", "--summary", "--json", str(logs)]
    )
    assert json.loads(plain.stdout)["categories"] == {"hard": 1}
    assert json.loads(local.stdout)["categories"] == {"admin": 1}


def test_a_misspelled_environment_variable_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in a config file is an error; in the environment it would be silently ignored."""
    monkeypatch.setenv("STREAMER_BACK_PRESURE", "5")
    monkeypatch.setenv("STREAMER_CACHE_DIR", "/tmp")  # means something, though no setting
    res = runner.invoke(app, ["validate"])
    assert res.exit_code == 0
    assert res.stderr.splitlines() == [
        "warning: STREAMER_BACK_PRESURE is not a streamer setting and is ignored "
        "(did you mean STREAMER_BACK_PRESSURE?)"
    ]


def test_unknown_keys_and_union_values_are_said_in_a_users_words(tmp_path: Path) -> None:
    config = tmp_path / "streamer.toml"
    config.write_text('back_presure = 5\nprocesses = "many"\n[nonsense]\nfoo = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(config)
    message = str(info.value)
    where = f"(in {config})"
    assert f"back_presure {where}: not a setting (did you mean back_pressure?)" in message
    assert message.endswith(f"foo {where}: not a setting")
    assert f"processes {where}: Input should be a valid integer" in message and "'auto'" in message
    assert "Extra inputs" not in message and "literal[" not in message


def test_kubernetes_service_variables_and_supervised_children_get_no_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streamer.config import unknown_variables

    k8s = {
        "STREAMER_SERVICE_HOST": "10.0.0.7",
        "STREAMER_SERVICE_PORT": "9464",
        "STREAMER_SERVICE_PORT_METRICS": "9464",
        "STREAMER_PORT": "tcp://10.0.0.7:9464",
        "STREAMER_PORT_9464_TCP": "tcp://10.0.0.7:9464",
        "STREAMER_PORT_9464_TCP_ADDR": "10.0.0.7",
        "STREAMER_METRICS_SERVICE_HOST": "10.0.0.8",
    }
    assert unknown_variables(k8s) == []
    typo = {"STREAMER_BACK_PRESURE": "5"}
    assert len(unknown_variables(typo)) == 1
    assert unknown_variables({**typo, "STREAMER_SUPERVISOR_PID": "1"}) == []


def test_the_projects_own_variables_get_no_warning() -> None:
    """Variables the project's scripts read (the test command's processes, the native path's
    switches...) are no typo: a run with ``STREAMER_TEST_PROCESSES=3`` printed the warning into
    every CLI test's output, failing 18 of them."""
    from streamer.config import OTHER_VARIABLES, unknown_variables

    ours = {f"STREAMER_{name}": "1" for name in OTHER_VARIABLES}
    assert "STREAMER_TEST_PROCESSES" in ours
    assert unknown_variables(ours) == []


def test_the_path_inside_a_table_setting_is_kept(tmp_path: Path) -> None:
    config = tmp_path / "streamer.toml"
    config.write_text('log_level = "warn"\n[kafka_extra]\nacks = 1\n')
    with pytest.raises(ConfigError, match=r"kafka_extra\.acks \(in .*\): Input should be a valid"):
        load_settings(config)
    config.write_text('log_level = "warn"\n')
    assert load_settings(config).log_level == "WARNING"


def test_the_worker_takes_rules_like_every_other_command(tmp_path: Path) -> None:
    """`-r/--rules` as in classify, explain, gaps and report (`-f/--files` still works)."""
    bad = tmp_path / "bad.toml"
    bad.write_text("[rules]\nA = ['x(']\n")
    for flag in ("-r", "--rules", "-f", "--files"):
        res = runner.invoke(app, ["worker", flag, str(bad), "-b", "127.0.0.1:9"])
        assert res.exit_code == 2, (flag, res.output)
        assert _one_line(res.stderr).startswith(f"rules: {bad}:2: label 'A' pattern #1 'x('")


def test_config_is_taken_after_the_command_name_too(tmp_path: Path) -> None:
    from streamer.cli import config_first

    assert config_first(["validate", "--config", "a.toml", "x"]) == [
        "--config",
        "a.toml",
        "validate",
        "x",
    ]
    assert config_first(["gaps", "--config=a.toml"]) == ["--config=a.toml", "gaps"]
    assert config_first(["explain", "--", "--config", "x"]) == ["explain", "--", "--config", "x"]
    rules = tmp_path / "one.toml"
    rules.write_text("[rules]\nInvalidRecipient = ['user unknown']\n")
    config = tmp_path / "c.toml"
    config.write_text(f"files = [{str(rules)!r}]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    env["PYTHONPATH"] = str(ROOT)
    for argv in (["--config", str(config), "validate"], ["validate", "--config", str(config)]):
        proc = subprocess.run(
            [sys.executable, "-m", "streamer", *argv],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (proc.returncode, proc.stdout) == (0, "OK: 1 pattern, 1 label, 1 file\n"), argv


def test_help_shows_no_type_for_plain_flags() -> None:
    for command in (["classify"], ["worker"], ["validate"], ["kafka", "start"]):
        res = runner.invoke(app, [*command, "--help"])
        assert res.exit_code == 0
        assert "<bool>" not in res.output, command
    assert "<int range>" in runner.invoke(app, ["gaps", "--help"]).output  # other types stay


def test_site_files_come_before_the_shipped_rules(tmp_path: Path) -> None:
    from streamer.config import shipped_rule_files

    mine = tmp_path / "mine.toml"
    mine.write_text("[rules]\nMessageExpired = ['^550 weird thing']\n")
    config = tmp_path / "c.toml"
    config.write_text(f"site_files = [{str(mine)!r}]\n")
    settings = load_settings(config)
    assert settings.rule_files == [mine, *shipped_rule_files()]
    res = runner.invoke(app, ["--config", str(config), "explain", "550 weird thing foo 123"])
    assert res.exit_code == 0, res.output
    assert "label:  MessageExpired" in res.output  # the shipped rules say InvalidRecipient
    res = runner.invoke(app, ["--config", str(config), "validate"])
    assert res.stdout.startswith("OK: 611 patterns"), res.output
