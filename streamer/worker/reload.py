"""Rules reloading: on SIGHUP, or when a rules file changed (``watch_rules``), off the event loop.

A reload that fails (a broken rules file) keeps the rules in force and says why; records keep
flowing while the new rules compile, and take effect from the next batch.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from streamer.classifier import ReloadableClassifier
from streamer.logs import log_event
from streamer.metrics import Metrics

log = logging.getLogger("streamer.worker")

#: How often the rules files' modification times are checked.
CHECK_INTERVAL_S = 1.0

FileStamps = dict[str, tuple[float, int] | None]


def stat_files(files: Sequence[Path | str]) -> FileStamps:
    """(mtime, size) of each file, None for a missing one."""
    out: FileStamps = {}
    for f in files:
        try:
            st = os.stat(f)
            out[str(f)] = (st.st_mtime, st.st_size)
        except OSError:
            out[str(f)] = None
    return out


class RulesReloader:
    def __init__(
        self,
        classifiers: ReloadableClassifier,
        metrics: Metrics,
        *,
        watch: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.classifiers = classifiers
        self.metrics = metrics
        self.watch = watch
        self.clock = clock
        self._stamps = stat_files(classifiers.files)
        self._last_check = clock()
        self._lock = asyncio.Lock()
        #: True once a reload replaced the classifier (its caches start from zero).
        self.replaced = False

    def changed(self) -> bool:
        """Whether a watched rules file changed since the last load (checked once a second)."""
        now = self.clock()
        if not self.watch or now - self._last_check < CHECK_INTERVAL_S:
            return False
        self._last_check = now
        return stat_files(self.classifiers.files) != self._stamps

    async def reload(self, why: str) -> bool:
        """Load the rules again; on failure the old rules stay in force."""
        async with self._lock:
            self._stamps = stat_files(self.classifiers.files)
            old = self.classifiers.current.version
            loop = asyncio.get_running_loop()
            try:
                # compiling a big rule set takes a while: off the loop, records keep flowing
                new = await loop.run_in_executor(None, self.classifiers.reload)
            except Exception as exc:
                self.metrics.rules_reload_failures.inc()
                log_event(
                    log,
                    logging.ERROR,
                    "rules reload failed; keeping the old rules",
                    why=why,
                    rules_version=old,
                    error=str(exc),
                )
                return False
            self.metrics.rules_reloads.inc()
            self.metrics.set_rules_version(new.version)
            self.replaced = True
            log_event(
                log, logging.INFO, "rules reloaded", why=why, old_version=old, version=new.version
            )
            return True
