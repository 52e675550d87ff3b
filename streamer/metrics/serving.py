"""The /metrics HTTP endpoint of a registry."""

from __future__ import annotations

import errno
import logging

from prometheus_client import CollectorRegistry, start_http_server


def serve_registry(
    registry: CollectorRegistry, host: str, port: int, *, fallback: bool = True
) -> int:
    """Start the /metrics HTTP endpoint in a thread; returns the bound port (0 = disabled).

    When ``port`` is taken (another worker on this host) it listens on a free port instead
    and logs a warning naming ``metrics_port``; without ``fallback`` it raises
    ``streamer.ports.PortInUseError`` naming the setting.
    """
    if port == 0:
        return 0
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        from streamer.ports import PortInUseError

        if not fallback:
            raise PortInUseError(
                errno.EADDRINUSE, f"metrics_port: {host}:{port} is in use by another process"
            ) from None
        server, _thread = start_http_server(0, addr=host, registry=registry)
        # the package's logger, as before the metrics were split into modules
        logging.getLogger(__package__).warning(
            "metrics_port: %s:%d is in use; serving metrics on port %d instead",
            host,
            port,
            server.server_port,
        )
    return int(server.server_port)
