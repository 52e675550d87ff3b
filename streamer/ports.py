"""Listening ports that another process may already hold (two workers on one host).

A worker listens on ``metrics_port`` (Prometheus) and ``web_port`` (Faust's ``/status``). With
default settings a second worker on the same host would find both taken; instead of failing, it
takes a free port and says which one (a warning in the log, and the ``worker starting`` line).
"""

from __future__ import annotations

import errno
import logging
import socket

log = logging.getLogger(__name__)


class PortInUseError(OSError):
    """``host:port`` is taken; the message names the setting."""


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (SO_REUSEADDR, as aiohttp and
    http.server set it, so connections in TIME_WAIT do not count as busy)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str) -> int:
    """A port the kernel considers free on ``host`` right now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def pick_port(host: str, port: int, setting: str, *, fallback: bool = True) -> int:
    """``port`` when it is free (0 stays 0: disabled), else a free one with a warning.

    Without ``fallback`` a busy port raises :class:`PortInUseError` naming ``setting``.
    """
    if port == 0 or port_is_free(host, port):
        return port
    if not fallback:
        raise PortInUseError(
            errno.EADDRINUSE, f"{setting}: {host}:{port} is in use by another process"
        )
    chosen = free_port(host)
    log.warning("%s: %s:%d is in use; listening on port %d instead", setting, host, port, chosen)
    return chosen


def pick_web_port(host: str, port: int) -> int:
    """The port for Faust's web server (``web_port``): the configured one, or a free one."""
    return pick_port(host, port, "web_port")
