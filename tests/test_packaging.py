"""The package works outside the repository: sdist -> wheel -> a fresh virtualenv -> the CLI.

What is built is what users get: a copy of the source tree (no build artefacts) is turned into an
sdist, the wheel is built from that sdist (as ``pip install`` of an sdist does), installed into a
new ``python -m venv`` in a temporary directory, and the commands run from a directory that is
not the repository, with no PYTHONPATH and no STREAMER_* variables.

Dependencies: installing the wheel's ~50 pinned dependencies from the registry would make this
test slow and dependent on the network, and they are not what is tested. The wheel is installed
alone (``--no-deps``) into the empty virtualenv first, then a ``.pth`` file appends the test
environment's site-packages for the dependencies. Being installed first and first on
``sys.path``, the wheel's ``streamer`` is the one imported (the test checks where it comes from).
Building the wheel needs setuptools and wheel: from this environment when it has both, else pip's
isolated build environment (which fetches them).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Not part of a source tree handed to a build (local state, caches, VCS data, build output).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "var",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
    ".hypothesis",
    "*.so",  # the C and Rust extensions built in place by the editable install
    "target",  # the native crate's cargo build output
)


#: A cold cargo build of the native crate takes minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.packaging, pytest.mark.long, pytest.mark.timeout(900)]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], stdin: str | None = None) -> str:
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STREAMER_", "PYTHON", "VIRTUAL_ENV")) and k != "KAFKA_BOOTSTRAP"
    }
    env["XDG_STATE_HOME"] = str(tmp / "state")
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # The native crate's dependencies compiled once, in the checkout's cargo cache: the crate
    # itself is still built from the sdist's sources, but not pyo3 and serde again every run.
    env["CARGO_TARGET_DIR"] = str(ROOT / "native" / "target")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    """(bin dir of the fresh virtualenv, a working directory outside the repository, env)."""
    tmp = tmp_path_factory.mktemp("packaging")
    env = _clean_env(tmp)
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    # 1. sdist (setuptools' PEP 517 hook; needs no `wheel` package)
    _run(
        [sys.executable, "-c", "from setuptools import build_meta as b; b.build_sdist('sdist')"],
        src,
        env,
    )
    (sdist,) = (src / "sdist").glob("streamer-*.tar.gz")
    # 2. the wheel, from the sdist
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip"]
    isolation = [] if importlib.util.find_spec("wheel") is None else ["--no-build-isolation"]
    _run([*pip, "wheel", "--no-deps", *isolation, "-w", str(wheels), str(sdist)], tmp, env)
    (wheel,) = wheels.glob("streamer-*.whl")
    # 3. a fresh virtualenv holding only the wheel, then the dependencies appended to its path
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    vpy = venv / "bin" / "python"
    _run([*pip, "--python", str(vpy), "install", "--no-deps", "--no-index", str(wheel)], tmp, env)
    purelib = _run(
        [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env
    ).strip()
    deps = [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    deps += site.getsitepackages()
    (Path(purelib) / "zz-test-dependencies.pth").write_text(
        "\n".join(dict.fromkeys(deps)) + "\n", encoding="utf-8"
    )
    work = tmp / "elsewhere"
    work.mkdir()
    return venv / "bin", work, env


def test_wheel_ships_rules_and_broker_files_once(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    bindir, _work, _env = installed
    (wheel,) = (bindir.parent.parent / "wheels").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for rel in (ROOT / "rules").iterdir():
        assert f"streamer/_data/rules/{rel.name}" in names, rel.name
    for rel in (ROOT / "deploy" / "kafka").iterdir():
        assert f"streamer/_data/kafka/{rel.name}" in names, rel.name
    assert "streamer/__main__.py" in names and "streamer/py.typed" in names
    # the native record path is compiled into the wheel (the sdist carries the crate and its
    # Cargo.lock); no C extension is left (the native path counts the analytics)
    assert not any(n.startswith("streamer/analytics/_") and n.endswith(".so") for n in names)
    assert any(n.startswith("streamer/_native") and n.endswith(".so") for n in names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") or n.endswith("/LICENSE") for n in names)
    # The repository keeps the one copy: no second one inside the package sources.
    assert not (ROOT / "streamer" / "_data").exists()


def test_installed_cli_works_outside_the_repository(
    installed: tuple[Path, Path, dict[str, str]],
) -> None:
    bindir, work, env = installed
    streamer = str(bindir / "streamer")
    python = str(bindir / "python")

    where = _run([python, "-c", "import streamer; print(streamer.__file__)"], work, env).strip()
    assert where.startswith(str(bindir.parent)), where  # the wheel's copy, not the checkout
    native = "from streamer.native import AVAILABLE; print(AVAILABLE)"
    assert _run([python, "-c", native], work, env).strip() == "True"

    assert _run([streamer, "--version"], work, env).strip() == "streamer 0.1.0"
    assert _run([python, "-m", "streamer", "--version"], work, env).strip() == "streamer 0.1.0"

    ok = _run([streamer, "validate"], work, env)
    assert ok.startswith("OK: ") and "patterns" in ok

    line = "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown"
    (out,) = _run([streamer, "classify", "--lines"], work, env, stdin=line + "\n").splitlines()
    got = json.loads(out)
    assert got["label"] == "InvalidRecipient"
    assert got["rule"]["file"].startswith("rules/"), got["rule"]  # never a build-machine path

    record = {
        "type": "Bounce",
        "recipient": "bob@example.com",
        "response": {"code": 550, "content": "5.1.1 user unknown", "command": None},
    }
    (enriched,) = _run(
        [streamer, "classify"], work, env, stdin=json.dumps(record) + "\n"
    ).splitlines()
    assert json.loads(enriched)["classification"]["label"] == "InvalidRecipient"

    explained = json.loads(_run([streamer, "explain", "--json", line], work, env))
    assert explained["label"] == "InvalidRecipient"
    assert all(m["file"].startswith("rules/") for m in explained["matches"])

    # The local broker's files (pom pins the Kafka version) come with the package too.
    version = _run(
        [python, "-c", "from streamer.devkit.broker import kafka_version; print(kafka_version())"],
        work,
        env,
    ).strip()
    assert version and version[0].isdigit()
    assert not list(work.iterdir()), "the commands wrote into the working directory"
