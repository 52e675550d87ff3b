"""Plain option values coerced without pydantic (``streamer.cli.coercion``): typer's results.

Every parameter of every command whose type has a plain coercion is given values of every kind;
the plain coercion must return what typer's own (pydantic) coercion returns, of the same type,
or raise the same error with the same message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import typer.main
from typer._click import Context
from typer._coercion import build_runtime_param
from typer.core import _TyperParameter

from streamer.cli import _register, app
from streamer.cli.coercion import PlainRuntimeParam, plain_coercion

_register()


def _parameters() -> list[tuple[str, _TyperParameter, Any]]:
    group: Any = typer.main.get_command(app)
    found = [("streamer", p, group) for p in group.params]
    for name, command in group.commands.items():
        found += [(name, p, command) for p in command.params]
        for sub, inner in getattr(command, "commands", {}).items():
            found += [(f"{name} {sub}", p, inner) for p in inner.params]
    return [(n, p, c) for n, p, c in found if isinstance(p, _TyperParameter)]


def _values(tmp_path: Path) -> list[Any]:
    afile = tmp_path / "a.toml"
    afile.write_text("")
    scalars: list[Any] = [
        "",
        "5",
        "0",
        "05",
        "-1",
        " 5",
        "1e3",
        "1.5",
        "९",  # a digit, not ASCII
        "9" * 30,
        "abc",
        "a\udcffb",
        "-",
        str(afile),
        str(tmp_path),
        str(tmp_path / "missing"),
        True,
        False,
        0,
        7,
        10**30,
        1.5,
        None,
        b"x",
    ]
    return [*scalars, ("a", "b"), [str(afile)], ("5", "x"), (), ("1", "2"), (True,)]


def _outcome(runtime: Any, value: Any, param: _TyperParameter, ctx: Context) -> tuple[str, Any]:
    try:
        result = runtime._coerce_value(value, param=param, ctx=ctx)
    except Exception as exc:
        return type(exc).__name__, str(exc)
    return type(result).__name__, result


def test_plain_coercion_gives_typer_s_results(tmp_path: Path) -> None:
    plain_params = 0
    for command, param, click_command in _parameters():
        descriptor = param.type_descriptor
        plain = plain_coercion(descriptor)
        if plain is None:
            continue
        plain_params += 1
        ctx = Context(click_command)
        own = build_runtime_param(descriptor)
        light = PlainRuntimeParam(
            descriptor.parameter_info, descriptor.annotation, plain, descriptor
        )
        for value in _values(tmp_path):
            expected = _outcome(own, value, param, ctx)
            assert _outcome(light, value, param, ctx) == expected, (command, param.name, value)
    assert plain_params > 50  # most of streamer's parameters


def test_classify_runs_without_pydantic(tmp_path: Path) -> None:
    rules = str(Path(__file__).parent / "fixtures" / "basic.toml")
    args = ["classify", "--lines", "-j", "1", "--top", "3", "--summary", "--rules", "RULES", "-"]
    code = (
        "import sys\n"
        "from streamer.cli import main\n"
        f"sys.argv = ['streamer', *{[rules if a == 'RULES' else a for a in args]!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "STREAMER_CACHE_DIR": str(tmp_path)}
    for _ in range(2):  # the second start reads what the first remembered of the settings
        run = subprocess.run(
            [sys.executable, "-c", code],
            input=b"550 user unknown\n",
            capture_output=True,
            check=True,
            env=env,
            timeout=120,
        )
    assert run.stdout.splitlines()[-1] == b"[]", run.stderr
