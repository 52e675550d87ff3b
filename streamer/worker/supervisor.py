"""``streamer worker --processes N``: N supervised worker processes in one consumer group.

A worker classifies on one Python thread, so a host with more cores runs more workers. The
supervisor classifies nothing itself: it starts N children (``python -m streamer worker`` with the
same settings, ``processes = 1``, worker id ``<id>-<i>`` and ports of their own), and then

- restarts a child that exits unasked, after a back-off that doubles with each recent crash;
  the slot keeps its worker id, so in exactly-once mode the new child fences the old one's
  transactions;
- gives up when one slot crashed ``max_crashes`` times within ``window_s``: every other child is
  drained and the supervisor exits 1 (a crash loop needs a human, not more restarts);
- gives up at once, exiting with the child's code, when a child exits with one of
  ``PERMANENT_EXITS`` (a configuration error, Kafka refusing its login or its TLS, missing
  ACLs): no restart cures those, and retrying them forever would hide them;
- starts a child exiting with ``TEMPFAIL_EXIT`` (Kafka away at its start, a rebalance under an
  exactly-once transaction) again with back-off, without counting a crash, for as long as it
  takes (else a restart during a broker outage soon looks like a crash loop);
- on SIGTERM/SIGINT passes the signal on, waits for every child to drain and commit, exits 0;
- on SIGHUP passes it on (each child reloads its rules).

A child whose supervisor disappears (kill -9) stops itself: ``follow_supervisor``. The
aggregated ``/metrics`` and ``/status`` are served by ``streamer.worker.supervisor_http``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamer.config import env_var
from streamer.logs import log_event
from streamer.ports import free_port
from streamer.worker.exits import PERMANENT_EXITS, TEMPFAIL_EXIT

log = logging.getLogger("streamer.supervisor")

#: Environment variable naming the supervisor's pid in a child (see ``follow_supervisor``).
SUPERVISOR_PID_ENV = "STREAMER_SUPERVISOR_PID"
#: How often the supervisor looks at its children.
TICK_S = 0.2


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When a crashed child is started again, and when the supervisor gives up."""

    max_crashes: int = 5
    window_s: float = 60.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def backoff(self, recent_crashes: int) -> float:
        """Seconds to wait before the next start, after ``recent_crashes`` (≥ 1) crashes."""
        return min(self.max_backoff_s, self.first_backoff_s * 2.0 ** max(0, recent_crashes - 1))


@dataclass(slots=True)
class Child:
    """One slot of the supervisor: the process in it now and its history."""

    index: int
    worker_id: str
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    web_port: int = 0
    started_at: float = 0.0
    restarts: int = 0
    last_exit: int | None = None
    restart_at: float | None = None  # monotonic time of the next start, while backing off
    crashes: deque[float] = field(default_factory=deque)
    tempfails: int = 0  # TEMPFAIL_EXIT exits in a row

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def state(self) -> str:
        if self.proc is not None and self.proc.poll() is None:
            return "running"
        return "restarting" if self.restart_at is not None else "stopped"


def child_environment(
    base: Mapping[str, str], flags: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, str]:
    """A child's environment: ``base``, then the parent's command-line flags, then ``overrides``.

    Flags become the children's ``STREAMER_*`` variables: a flag wins over the environment and
    the environment over the config file, so the children resolve the same settings as the parent.
    """
    env = dict(base)
    for name, value in [*flags.items(), *overrides.items()]:
        if value is None:
            continue
        env[env_var(name)] = _env_value(value)
    return env


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return json.dumps([str(v) for v in value])
    return str(value)


def worker_command() -> list[str]:
    """The command running one child worker (this interpreter, this streamer)."""
    return [sys.executable, "-m", "streamer", "worker"]


class Supervisor:
    """Runs and watches the children; see the module docstring."""

    def __init__(
        self,
        count: int,
        worker_id: str,
        environment: Callable[[Child], dict[str, str]],
        *,
        command: Sequence[str] | None = None,
        policy: RestartPolicy | None = None,
        drain_timeout_s: float = 60.0,
        metrics_host: str | None = "127.0.0.1",
        web_host: str | None = "127.0.0.1",
    ) -> None:
        self.children = [Child(i, f"{worker_id}-{i}") for i in range(count)]
        self.worker_id = worker_id
        self.environment = environment
        self.command = list(command or worker_command())
        self.policy = policy or RestartPolicy()
        self.drain_timeout_s = drain_timeout_s
        self.metrics_host = metrics_host  # None: the children serve no metrics
        self.web_host = web_host  # None: the children serve no /status
        self.stopping = False
        self.exit_code = 0
        #: Called for each restart of a child (metrics).
        self.on_restart: Callable[[Child], None] = lambda _child: None
        self._stop_reason = ""
        self._wake = threading.Event()
        self._forward: list[int] = []  # signals to pass on to the children

    # --- signals -------------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        signal.signal(signal.SIGHUP, self._on_hangup)

    def _on_stop_signal(self, signum: int, _frame: Any) -> None:
        self.request_stop(signal.Signals(signum).name)

    def _on_hangup(self, _signum: int, _frame: Any) -> None:
        self._forward.append(signal.SIGHUP)
        self._wake.set()

    def request_stop(self, why: str) -> None:
        if not self.stopping:
            self.stopping = True
            self._stop_reason = why
        self._wake.set()

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        """Start the children and watch them until stopped; returns the exit code."""
        log_event(log, logging.INFO, "supervisor starting", processes=len(self.children))
        for child in self.children:
            if not self.stopping:
                self._start(child)
        while not self.stopping:
            self._wake.wait(TICK_S)
            self._wake.clear()
            while self._forward:
                self._signal_all(self._forward.pop(0))
            now = time.monotonic()
            for child in self.children:
                self._watch(child, now)
        return self._stop_all()

    def _watch(self, child: Child, now: float) -> None:
        if child.restart_at is not None:
            if now >= child.restart_at and not self.stopping:
                child.restarts += 1
                self.on_restart(child)
                self._start(child)
            return
        proc = child.proc
        if proc is None or (code := proc.poll()) is None:
            return
        child.last_exit = code
        if code in PERMANENT_EXITS:
            self._incurable(child, code)
            return
        if code == TEMPFAIL_EXIT:
            if time.time() - child.started_at > self.policy.window_s:  # started_at: wall clock
                child.tempfails = 0  # it ran a good while: start the back-off over
            child.tempfails += 1
            delay = self.policy.backoff(child.tempfails)
            child.restart_at = now + delay
            log_event(
                log,
                logging.WARNING,
                "worker met a passing condition; starting it again",
                child=child.index,
                restart_in_s=round(delay, 2),
            )
            return
        child.tempfails = 0
        child.crashes.append(now)
        while child.crashes and now - child.crashes[0] > self.policy.window_s:
            child.crashes.popleft()
        if len(child.crashes) >= self.policy.max_crashes:
            log_event(
                log,
                logging.ERROR,
                "worker keeps crashing: stopping",
                child=child.index,
                crashes=len(child.crashes),
                window_s=self.policy.window_s,
                exit_code=code,
            )
            self._give_up(1)
            return
        delay = self.policy.backoff(len(child.crashes))
        child.restart_at = now + delay
        log_event(
            log,
            logging.WARNING,
            "worker exited; restarting",
            child=child.index,
            pid=proc.pid,
            exit_code=code,
            restart_in_s=round(delay, 2),
        )

    def _incurable(self, child: Child, code: int) -> None:
        """A restart would meet the same fault: stop everything, exiting with the child's code."""
        why = PERMANENT_EXITS[code]
        log_event(
            log, logging.ERROR, "worker cannot run; no restart cures it", child=child.index, why=why
        )
        self._give_up(code)

    def _give_up(self, code: int) -> None:
        self.exit_code = code
        self.request_stop("a worker cannot run")

    def _start(self, child: Child) -> None:
        child.restart_at = None
        child.metrics_port = free_port(self.metrics_host) if self.metrics_host else 0
        child.web_port = free_port(self.web_host) if self.web_host else 0
        env = self.environment(child)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        try:
            child.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:  # cannot even start: no restart will do better
            log_event(log, logging.ERROR, "cannot start a worker", child=child.index, error=exc)
            self._give_up(1)
            return
        child.started_at = time.time()
        log_event(log, logging.INFO, "worker started", child=child.index, pid=child.proc.pid)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    def _stop_all(self) -> int:
        """SIGTERM to every child, wait for their drain (SIGKILL after the timeout)."""
        log_event(log, logging.INFO, "supervisor stopping", why=self._stop_reason)
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_timeout_s
        codes: list[int] = []
        for child in self.children:
            backing_off, child.restart_at = child.restart_at is not None, None
            proc = child.proc
            if proc is None or backing_off:
                # waiting for its restart: no process to drain, and its exit was dealt with
                # when it came (a stop then, e.g. just after a broker restart, is no failure)
                continue
            try:
                code = proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log_event(log, logging.ERROR, "worker did not stop: killed", child=child.index)
                proc.kill()
                code = proc.wait()
            child.last_exit = code
            codes.append(code)
        if self.exit_code == 0 and any(code != 0 for code in codes):
            self.exit_code = 1
        log_event(log, logging.INFO, "supervisor stopped", exit_codes=codes)
        return self.exit_code


def follow_supervisor(interval_s: float = 1.0) -> None:
    """In a child: stop gracefully (SIGTERM to itself) when the supervisor is gone.

    Without it a supervisor killed by SIGKILL would leave its children running unsupervised.
    """
    wanted = os.environ.get(SUPERVISOR_PID_ENV)
    if not wanted or not wanted.isdigit():
        return
    parent = int(wanted)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        log.warning("supervisor %d is gone: stopping", parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="follow-supervisor", daemon=True).start()
