"""Where the files streamer ships live: the default rules and the local broker's Kafka files.

The repository keeps one copy of each, at the top level: ``rules/`` and ``deploy/kafka/``. A
built wheel carries them as package data under ``streamer/_data/`` (``setup.py`` copies them at
build time), so an installed package needs no checkout. At run time the package data wins; in a
source checkout or an editable install there is none, and the repository's folders are used.

This module imports nothing of streamer: the classifier core may use it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

#: The directory holding the ``streamer`` package (``site-packages`` when installed).
PACKAGE_DIR = Path(__file__).resolve().parent
#: The source checkout's root when running from one (its files are then the shipped ones).
PROJECT_ROOT = PACKAGE_DIR.parent
#: Name inside ``streamer/_data`` -> the folder of the repository it is copied from.
SOURCES: dict[str, str] = {"rules": "rules", "kafka": "deploy/kafka"}
#: How shipped rule files are named in outputs and messages: ``rules/<file>``.
SHIPPED_RULES_PREFIX = "rules/"


def _packaged(name: str) -> Path | None:
    try:
        root = resources.files("streamer") / "_data" / name
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - not importable as a package
        return None
    # A wheel installs on a file system, so the resource is a real directory there.
    path = Path(str(root))
    return path if path.is_dir() else None


def shipped_dir(name: str) -> Path:
    """The shipped folder ``name`` (``rules`` or ``kafka``): package data, else the checkout's."""
    if name not in SOURCES:
        raise KeyError(f"{name!r}: streamer ships {', '.join(SOURCES)}")
    return _packaged(name) or PROJECT_ROOT / SOURCES[name]


def rules_dir() -> Path:
    """The default rules (``load-order.txt`` lists them) and the analytics tables."""
    return shipped_dir("rules")


def kafka_dir() -> Path:
    """``pom.xml``, ``server.properties`` and ``log4j2.properties`` of the local broker."""
    return shipped_dir("kafka")


def in_source_checkout() -> bool:
    """True when running from the repository (editable install or ``PYTHONPATH``)."""
    return (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "rules").is_dir()


def display_rule_file(path: str) -> str:
    """How a rules file is named in outputs: ``rules/<name>`` for a shipped rules file (never
    the absolute path of the machine it runs on), else the path as it was given."""
    try:
        resolved = Path(path).resolve()
    except OSError:  # pragma: no cover - unresolvable paths are shown as given
        return path
    shipped = rules_dir().resolve()
    if resolved.parent == shipped:
        return SHIPPED_RULES_PREFIX + resolved.name
    return path
