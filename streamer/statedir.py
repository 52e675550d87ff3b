"""Per-worker Faust data folders (``<state_dir>/faust/<worker-id>``) that do not pile up.

The default worker id is ``<host>-<pid>``, so every worker run used to leave a folder behind.
:func:`claim` records which process owns a worker's folder (``owner.json``: host, pid, process
start time); :func:`remove_stale` deletes the folders whose owner process on this host is gone.
A folder of another host (a shared state directory) or of a live process is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
OWNER_FILE = "owner.json"


def faust_dir(state_dir: Path, worker_id: str) -> Path:
    return Path(state_dir) / "faust" / worker_id


def _started(pid: int) -> float | None:
    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def claim(state_dir: Path, worker_id: str) -> Path:
    """Create this worker's Faust folder and record this process as its owner."""
    folder = faust_dir(state_dir, worker_id)
    folder.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "started": _started(os.getpid())}
    (folder / OWNER_FILE).write_text(json.dumps(owner), encoding="utf-8")
    return folder


def _owner(folder: Path, host: str) -> tuple[int, float | None] | None:
    """(pid, start time) of the folder's owner on ``host``; None when unknown or elsewhere."""
    try:
        data = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        if data.get("host") != host:
            return None
        return int(data["pid"]), data.get("started")
    except FileNotFoundError:
        # A folder from before owner files: the default id ``<host>-<pid>`` names its process.
        match = re.fullmatch(re.escape(host) + r"-(\d+)", folder.name)
        return (int(match.group(1)), None) if match else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: int, started: float | None) -> bool:
    now = _started(pid)
    if now is None:
        return False
    # A recycled pid belongs to a process started later than the one that wrote the file.
    return started is None or abs(now - float(started)) < 1.0


def remove_stale(state_dir: Path, keep: str | None = None) -> list[Path]:
    """Delete the Faust folders whose owning process on this host has exited; returns them."""
    root = Path(state_dir) / "faust"
    if not root.is_dir():
        return []
    host = socket.gethostname()
    removed = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != keep):
        owner = _owner(folder, host)
        if owner is None or _alive(*owner):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(folder)
    if removed:
        log.info("removed %d stale Faust folder(s) in %s", len(removed), root)
    return removed
