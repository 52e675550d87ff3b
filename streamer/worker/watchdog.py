"""A deadline for blocking client calls that might never return.

A few librdkafka calls block the event loop thread by design (the transactional ones, whose
delivery reports must be served on that thread). Their timeouts are not always honoured:
librdkafka issues 5456 and 5511 (open in 2.16) make ``send_offsets_to_transaction`` wait
forever once the group coordinator's broker has left and come back, which a broker restart
does. A worker stuck there answers nothing, not even SIGTERM, and holds its partitions.

``Watchdog`` turns such a hang into a crash the deployment already handles: past its
deadline it logs why and ends the process at once (nothing can unblock the call). Nothing is
lost: the batch's offsets were not committed, its open transaction is aborted when the
restarted worker (same transactional id) starts, or by the broker's transaction timeout, and
its partitions move on after the consumer's session timeout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from streamer.logs import log_event
from streamer.worker.exits import CRASH_EXIT

log = logging.getLogger("streamer.worker")


def exit_now() -> None:
    """End the process without unwinding (the main thread is blocked in C code)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(CRASH_EXIT)


class Watchdog:
    """One thread watching the call in progress: ``with watchdog.guard(seconds, "what"):``
    runs ``on_expiry`` if the block outlives ``seconds`` (arming costs a lock, not a thread)."""

    def __init__(self, on_expiry: Callable[[], None] = exit_now) -> None:
        self.on_expiry = on_expiry
        self._cond = threading.Condition()
        self._armed: tuple[float, float, str] | None = None  # (deadline, seconds, what)
        self._thread: threading.Thread | None = None

    @property
    def guarding(self) -> str | None:
        """The call in progress under a guard (its ``what``), if any."""
        armed = self._armed
        return armed[2] if armed is not None else None

    @contextmanager
    def guard(self, seconds: float, what: str) -> Iterator[None]:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
                self._thread.start()
            self._armed = (time.monotonic() + seconds, seconds, what)
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._armed = None
                self._cond.notify()

    def _watch(self) -> None:
        with self._cond:
            while True:
                armed = self._armed
                if armed is None:
                    self._cond.wait()
                    continue
                left = armed[0] - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._armed = None  # fires once per guard
                _deadline, seconds, what = armed
                log_event(
                    log,
                    logging.CRITICAL,
                    "blocking call hung; exiting so that a restarted worker takes over",
                    call=what,
                    seconds=seconds,
                )
                self.on_expiry()
