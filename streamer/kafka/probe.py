"""Does a Kafka cluster answer? The check every command makes before it starts its clients.

A wrong address, a refused login or a certificate that does not verify becomes one line that
says why (``KafkaUnavailable``), in seconds rather than after librdkafka's retries.
"""

from __future__ import annotations

import os
import socket
import ssl
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streamer.config import Settings
from streamer.kafka.clients import client_config


class KafkaUnavailable(Exception):
    """No Kafka to work with; the message says why."""


#: Connection errors no retry cures (a refused login, a certificate that does not verify):
#: reported at once instead of after the whole timeout.
_HOPELESS = {KafkaError._AUTHENTICATION, KafkaError._SSL}


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def answers_metadata(conf: dict[str, Any], timeout: float = 5.0) -> str | None:
    """None when the cluster answered a metadata request with at least one broker, else why not.

    A failed login or TLS handshake ends the wait at once, with librdkafka's reason.
    """
    hopeless: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        if err.code() in _HOPELESS:
            hopeless.append(err)

    # Route librdkafka's own log lines (connection refused, ...) away from the user's terminal;
    # its errors reach on_error instead.
    admin_conf: dict[str, Any] = {**conf, "log_level": 0, "error_cb": on_error}
    admin = AdminClient(admin_conf)
    deadline = time.monotonic() + timeout
    why = "no answer"
    while True:
        try:
            md = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            why = str(exc.args[0]) if exc.args else repr(exc)
        else:
            return None if md.brokers else "metadata lists no broker"
        admin.poll(0)  # serves on_error
        if hopeless:
            return hopeless[0].str() + tls_hint(hopeless[0], conf)
        if time.monotonic() >= deadline:
            return why


def check_bootstrap(settings: Settings, bootstrap: str, timeout: float = 10.0) -> None:
    """KafkaUnavailable unless the Kafka cluster at ``bootstrap`` answers a metadata request."""
    # A quick TCP look first: a wrong address fails in a second, not after the whole timeout.
    reachable = []
    for address in (a.strip() for a in bootstrap.split(",")):
        host, _, port = address.rpartition(":")
        if port.isdigit() and port_accepts(host.strip("[]") or "127.0.0.1", int(port), 3.0):
            reachable.append(address)
    if not reachable:
        raise KafkaUnavailable(f"Kafka at {bootstrap} does not answer: nothing accepts connections")
    why = answers_metadata(client_config(settings, bootstrap), timeout)
    if why is not None:
        raise KafkaUnavailable(f"Kafka at {bootstrap} does not answer: {why}")


def tls_hint(err: KafkaError, conf: dict[str, Any]) -> str:
    """Why a TLS handshake failed, in words librdkafka does not give: it says "certificate verify
    failed" (and suggests ssl.ca.location) for a hostname mismatch too. Python's ssl module
    repeats the handshake with the same CA and says which check failed; "" when it cannot."""
    if err.code() != KafkaError._SSL or "verify failed" not in err.str():
        return ""
    first = str(conf.get("bootstrap.servers", "")).split(",")[0].strip()
    host, _, port = first.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        return ""
    ca = conf.get("ssl.ca.location")
    try:
        context = ssl.create_default_context(
            cafile=ca if ca and os.path.isfile(ca) else None,
            capath=ca if ca and os.path.isdir(ca) else None,
        )
        with (
            socket.create_connection((host, int(port)), timeout=5.0) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return ""
    except ssl.SSLCertVerificationError as exc:
        message = str(exc.verify_message)
        if "mismatch" in message.lower():
            message += "; hostname verification is on"
        return f" ({message})"
    except (OSError, ValueError):
        return ""
