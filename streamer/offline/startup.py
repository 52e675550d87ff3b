"""A lean start for ``streamer classify``: its settings and parsed rules, remembered between runs.

Building the settings imports pydantic-settings (~0.15 s of CPU at every start) and loading
the rules parses every file and translates every pattern (~0.05 s). Neither changes between
two runs with the same inputs, so ``classify`` keeps the few settings it uses and the parsed
:class:`~streamer.rules.RuleSet` in the cache folder (``$STREAMER_CACHE_DIR``, else
``$XDG_CACHE_HOME/streamer``, else ``~/.cache/streamer``), each under a key made of
everything it is built from, the package's own folder included:

* the settings: the code that defines them (``config``, ``memory``, ``resources``),
  every ``STREAMER_*``, ``KAFKA_*`` and ``XDG_*`` variable and ``HOME``, the config file's
  name and bytes, the ``--rules`` given and the working directory (relative names);
* the rules: the code that parses them (``rules``, ``rust_regex``: modules or packages) and
  every rule file's name and bytes.

So a changed file, variable or release is a miss, and a miss does what a run without the cache
does (errors included: only what loaded cleanly is remembered). Entries are pickles: one is
read only from a folder and a file owned by this user that no one else may write. At most
:data:`KEEP` entries are kept. Any trouble with the folder only means a slower start.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

#: Entries kept in the cache folder (the oldest go first).
KEEP = 32
#: The sub-folder of the cache folder.
FOLDER = "classify"
_CODE = Path(__file__).resolve().parents[1]  # the streamer package
#: Whether this process started without the settings' module: a fresh start (decided once:
#: a first miss then loads it).
_FRESH = "streamer.config" not in sys.modules
#: The variables the settings read (an alias, default folders): any of them in the key.
_READ_BY_SETTINGS = ("STREAMER_", "KAFKA_", "XDG_", "HOME")


@dataclass(frozen=True, slots=True)
class ClassifySettings:
    """The settings ``streamer classify`` uses (the names and meanings of ``Settings``')."""

    rule_files: list[Path]
    cache_size: int
    uncategorized_cache_size: int
    max_message_bytes: int
    analytics: bool
    category_files: list[Path]
    provider_files: list[Path]

    @classmethod
    def of(cls, settings: Any) -> ClassifySettings:
        return cls(
            list(settings.rule_files),
            settings.cache_size,
            settings.uncategorized_cache_size,
            settings.max_message_bytes,
            settings.analytics,
            list(settings.category_files),
            list(settings.provider_files),
        )


def cache_folder() -> Path:
    if env := os.environ.get("STREAMER_CACHE_DIR"):
        return Path(env).expanduser() / FOLDER
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / FOLDER


def _digest(parts: Sequence[object]) -> str:
    h = hashlib.sha256()
    _feed(h, parts)
    return h.hexdigest()[:32]


def _feed(h: Any, part: object) -> None:
    """Each item with its length (no two inputs hash the same bytes); bytes as they are."""
    if isinstance(part, list | tuple):
        h.update(b"[%d" % len(part))
        for item in part:
            _feed(h, item)
        return
    data = part if isinstance(part, bytes) else repr(part).encode("utf-8", "surrogatepass")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _code(*modules: str) -> list[object]:
    """The source of each module: a ``.py`` file, or every ``.py`` file of a package."""
    parts: list[object] = []
    for module in modules:
        path = _CODE / module
        files = [path.with_suffix(".py")] if path.with_suffix(".py").exists() else []
        files = files or sorted(path.rglob("*.py"))
        if not files:
            raise FileNotFoundError(path)
        parts += [(str(f.relative_to(_CODE)), f.read_bytes()) for f in files]
    return parts


def settings_key(rules: Sequence[Path] | None, kind: str = "settings") -> str | None:
    """The key of what ``kind`` of thing the settings give for this run; None when the config
    file cannot be read (the settings' own loading reports that)."""
    env = sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(_READ_BY_SETTINGS))
    config = os.environ.get("STREAMER_CONFIG")
    try:
        config_bytes = Path(config).read_bytes() if config else b""
        code = _code("config", "memory", "resources", "offline/startup")
    except OSError:
        return None
    cwd = os.getcwd()
    return _digest([kind, str(_CODE), *code, env, config, config_bytes, rules, cwd])


def rules_key(files: Sequence[Path]) -> str | None:
    """The key of the rules in ``files``; None when one cannot be read (loading says why)."""
    try:
        parts = [(str(f), Path(f).read_bytes()) for f in files]
        code = _code("rules", "rust_regex", "resources")
    except OSError:
        return None
    return _digest(["rules", str(_CODE), *code, parts])


def remembered(key: str | None, make: Callable[[], T]) -> T:
    """The value stored under ``key``, else ``make()`` (stored for the next run). Only at a
    fresh start: once the settings' module is loaded (a test process, a long-lived caller),
    building them again costs little, and module state may differ from a fresh start's."""
    if key is None or not _FRESH:
        return make()
    folder = cache_folder()
    path = folder / f"{key}.pickle"
    found = _read(folder, path)
    if found is not None:
        return found  # type: ignore[no-any-return]
    value = make()
    _write(folder, path, value)
    return value


def _trusted(st: os.stat_result) -> bool:
    """Owned by this user, writable by no one else."""
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _read(folder: Path, path: Path) -> Any:
    try:
        with open(path, "rb") as fh:
            if not (_trusted(os.fstat(fh.fileno())) and _trusted(folder.stat())):
                return None
            return pickle.load(fh)
    except Exception:  # missing, unreadable, from another Python: a slower start, no more
        return None


def _write(folder: Path, path: Path, value: object) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only home, a full disk: the next start is as slow as this one
