"""Secrets in the configuration: from files (a mounted Kubernetes Secret) or the environment, and
never shown: not in the settings' repr, error messages, ``--help`` or a config error's line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamer.cli import _register, app
from streamer.config import ConfigError, Settings, load_settings

SECRET = "s3cr3t-Hunter2-do-not-print"
runner = CliRunner()
_register()


pytestmark = pytest.mark.usefixtures("clean_env")  # conftest: no STREAMER_* leaks in


@pytest.fixture
def rules(test_rules_file: Path) -> Path:
    return test_rules_file  # the session's one-rule file (conftest)


def _secret_file(tmp_path: Path, content: str, name: str = "password") -> Path:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (SECRET, SECRET),
        (SECRET + "\n", SECRET),  # a Secret created from a file usually ends in a newline
        (SECRET + "\r\n", SECRET),
        (SECRET + "\n\n", SECRET + "\n"),  # only one newline is taken away
        (" " + SECRET + " \n", " " + SECRET + " "),  # spaces may be part of a password
    ],
)
def test_password_files_are_read_without_one_trailing_newline(
    tmp_path: Path, rules: Path, content: str, expected: str
) -> None:
    s = load_settings(
        files=[rules],
        sasl_password_file=_secret_file(tmp_path, content),
        ssl_key_password_file=_secret_file(tmp_path, content, "key-password"),
    )
    conf = s.kafka_client_config()
    assert conf["sasl.password"] == expected
    assert conf["ssl.key.password"] == expected


def test_password_file_from_the_environment_and_relative_to_the_config_file(
    tmp_path: Path, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _secret_file(tmp_path, SECRET + "\n", "sasl.pw")
    config = tmp_path / "streamer.toml"
    config.write_text('[kafka]\nsasl_password_file = "sasl.pw"\n')
    s = load_settings(config, files=[rules])
    assert s.kafka_client_config()["sasl.password"] == SECRET
    assert s.sasl_password_file == tmp_path / "sasl.pw"

    other = _secret_file(tmp_path, "from-env\n", "env.pw")
    monkeypatch.setenv("STREAMER_SSL_KEY_PASSWORD_FILE", str(other))
    assert load_settings(files=[rules]).kafka_client_config()["ssl.key.password"] == "from-env"


def test_password_from_the_environment_still_works(
    rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMER_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("STREAMER_SSL_KEY_PASSWORD", SECRET + "-key")
    conf = load_settings(files=[rules]).kafka_client_config()
    assert conf["sasl.password"] == SECRET
    assert conf["ssl.key.password"] == SECRET + "-key"


@pytest.mark.parametrize("problem", ["missing", "directory", "unreadable", "empty", "binary"])
def test_a_bad_password_file_is_one_line_naming_the_setting_and_path(
    tmp_path: Path, rules: Path, problem: str
) -> None:
    path = tmp_path / "pw"
    if problem == "directory":
        path.mkdir()
    elif problem == "unreadable":
        _secret_file(tmp_path, SECRET, "pw").chmod(0o000)
        if os.access(path, os.R_OK):  # root reads anything: make the read fail another way
            path.chmod(0o600)
            path.unlink()
            path.mkdir()
    elif problem == "empty":
        _secret_file(tmp_path, "\n", "pw")
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe" + SECRET.encode())
    with pytest.raises(ConfigError) as info:
        load_settings(files=[rules], sasl_password_file=path)
    message = str(info.value)
    assert message.startswith(f"sasl_password_file: {path}") or message.startswith(
        f"sasl_password_file: cannot read {path}"
    ), message
    assert "\n" not in message
    assert SECRET not in message and "\\xff" not in message


def test_password_and_password_file_together_are_refused(tmp_path: Path, rules: Path) -> None:
    with pytest.raises(ConfigError, match="sasl_password and sasl_password_file are both set"):
        load_settings(
            files=[rules],
            sasl_password=SECRET,
            sasl_password_file=_secret_file(tmp_path, SECRET),
        )


def test_secrets_never_show_in_repr_dumps_or_validation_errors(
    tmp_path: Path, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = load_settings(files=[rules], sasl_password=SECRET, ssl_key_password=SECRET)
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        assert SECRET not in text
    assert "**********" in repr(s)
    # an invalid value elsewhere: pydantic's message must not carry the secrets along
    monkeypatch.setenv("STREAMER_SASL_PASSWORD", SECRET)
    monkeypatch.setenv("STREAMER_BATCH_SIZE", "not-a-number")
    monkeypatch.setenv("STREAMER_SECURITY_PROTOCOL", SECRET)  # a secret pasted in the wrong key
    with pytest.raises(ConfigError) as info:
        load_settings(files=[rules])
    assert "batch_size" in str(info.value) and "security_protocol" in str(info.value)
    assert SECRET not in str(info.value)
    monkeypatch.delenv("STREAMER_BATCH_SIZE")
    monkeypatch.delenv("STREAMER_SECURITY_PROTOCOL")
    monkeypatch.setenv("STREAMER_KAFKA_EXTRA", SECRET)  # not JSON
    with pytest.raises(ConfigError) as info:
        load_settings(files=[rules])
    assert "STREAMER_KAFKA_EXTRA" in str(info.value) and SECRET not in str(info.value)


def test_cli_config_error_and_help_show_no_secret(
    tmp_path: Path, rules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAMER_FILES", f'["{rules}"]')
    monkeypatch.setenv("STREAMER_SASL_PASSWORD", SECRET)
    result = runner.invoke(app, ["worker", "--help"])
    assert result.exit_code == 0 and SECRET not in result.output

    monkeypatch.delenv("STREAMER_SASL_PASSWORD")
    missing = tmp_path / "no-such-secret"
    monkeypatch.setenv("STREAMER_SASL_PASSWORD_FILE", str(missing))
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert lines == [
        f"configuration error: sasl_password_file: cannot read {missing}: No such file or directory"
    ]


def test_the_secret_types_are_unwrapped_only_for_librdkafka(rules: Path) -> None:
    s = Settings(files=[rules], sasl_password=SECRET)
    assert s.sasl_password is not None and str(s.sasl_password) == "**********"
    assert s.kafka_client_config()["sasl.password"] == SECRET
