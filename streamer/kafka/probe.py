"""Can this client use the Kafka cluster? The check every command makes before it starts its
clients.

What stands in the way becomes one ``KafkaProblem`` of one kind, in seconds rather than after
librdkafka's retries; each kind has its line and its exit status (``streamer.worker.exits``):

- ``KafkaUnavailable``: nothing answers (nothing listens, no answer in time, a broker
  restarting). The only kind that waiting can cure.
- ``KafkaLoginRefused``: the broker answered and refused the SASL login.
- ``KafkaTLSMismatch``: the TLS handshake cannot succeed (a certificate that does not verify, a
  plaintext client on a TLS listener or the reverse).
- ``KafkaNotAuthorized``: logged in, but the ACLs do not allow the command's topics or group.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient

from streamer.config import Settings
from streamer.exits import (
    CRASH_EXIT,
    LOGIN_REFUSED_EXIT,
    NOT_AUTHORIZED_EXIT,
    TEMPFAIL_EXIT,
    TLS_MISMATCH_EXIT,
)
from streamer.kafka.clients import client_config


class KafkaProblem(Exception):
    """Kafka cannot be used; the message says why in one line, ``exit_code`` what it means."""

    exit_code: ClassVar[int] = CRASH_EXIT
    template: ClassVar[str] = "Kafka at {bootstrap}: {why}"

    @classmethod
    def at(cls, bootstrap: str, why: str) -> Self:
        return cls(cls.template.format(bootstrap=bootstrap, why=why))


class KafkaUnavailable(KafkaProblem):
    """Nothing answers: a passing condition, worth trying again later."""

    exit_code = TEMPFAIL_EXIT
    template = "Kafka at {bootstrap} does not answer: {why}"


class KafkaLoginRefused(KafkaProblem):
    """The broker refused the SASL login (user, password or mechanism)."""

    exit_code = LOGIN_REFUSED_EXIT
    template = (
        "Kafka at {bootstrap} refused the login: {why}; "
        "check sasl_username, sasl_password and sasl_mechanism"
    )


class KafkaTLSMismatch(KafkaProblem):
    """The client's TLS settings and the listener's cannot agree."""

    exit_code = TLS_MISMATCH_EXIT
    template = (
        "TLS does not match Kafka at {bootstrap}: {why}; "
        "check security_protocol and ssl_ca_location"
    )


class KafkaNotAuthorized(KafkaProblem):
    """Logged in, but the ACLs do not allow what the command does."""

    exit_code = NOT_AUTHORIZED_EXIT
    template = "Kafka at {bootstrap} does not allow {why}; check the principal's ACLs"


@dataclass(frozen=True, slots=True)
class Needs:
    """What a command does with which topics and which consumer group (checked against ACLs)."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    describe: tuple[str, ...] = ()
    group: str | None = None  # joined or committed to: READ
    more_groups: tuple[str, ...] = ()  # other groups the command joins (READ)


def worker_needs(settings: Settings) -> Needs:
    """A worker reads its input in its group and writes every other topic it uses; with
    analytics its keyed stages (suppressions, stats rollup) also read their inputs and
    changelogs, each in a group of its own (``streamer.worker.keyed_stage``)."""
    from streamer.kafka.admin import default_topics, stage_groups, stage_topics

    writes = [t for t in default_topics(settings) if t != settings.input_topic]
    if not settings.analytics:
        return Needs(read=(settings.input_topic,), write=tuple(writes), group=settings.group_id)
    return Needs(
        read=(settings.input_topic, *(t for t in stage_topics(settings) if t)),
        write=tuple(writes),
        group=settings.group_id,
        more_groups=tuple(stage_groups(settings)),
    )


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def check_bootstrap(
    settings: Settings, bootstrap: str, timeout: float = 10.0, needs: Needs | None = None
) -> None:
    """Return when the cluster at ``bootstrap`` answers a metadata request and (``needs``) the
    ACLs allow what the command does; else the ``KafkaProblem`` that says why."""
    # A quick TCP look first: a wrong address fails in a second, not after the whole timeout.
    if not any(port_accepts(host, port, 3.0) for host, port in _addresses(bootstrap)):
        raise KafkaUnavailable.at(bootstrap, "nothing accepts connections")
    conf = client_config(settings, bootstrap)
    problem = metadata_problem(conf, timeout)
    if problem is not None:
        kind, why = problem
        raise kind.at(bootstrap, why)
    denied = denied_access(conf, needs) if needs is not None else []
    if denied:
        who = f"User:{conf['sasl.username']}" if conf.get("sasl.username") else "this client"
        raise KafkaNotAuthorized.at(bootstrap, f"{who} {', '.join(denied)}")


def answers_metadata(conf: dict[str, Any], timeout: float = 5.0) -> str | None:
    """None when the cluster answered a metadata request with at least one broker, else why not."""
    problem = metadata_problem(conf, timeout)
    return None if problem is None else problem[1]


def metadata_problem(
    conf: dict[str, Any], timeout: float = 5.0
) -> tuple[type[KafkaProblem], str] | None:
    """None when the cluster answered a metadata request with at least one broker, else the
    kind of problem and why. A refused login or TLS handshake ends the wait at once."""
    errors: list[KafkaError] = []
    # librdkafka's own log lines (connection refused, ...) stay off the user's terminal; its
    # errors reach error_cb, served by poll.
    admin_conf: dict[str, Any] = {**conf, "log_level": 0, "error_cb": errors.append}
    admin = AdminClient(admin_conf)
    deadline = time.monotonic() + timeout
    why = "no answer"
    looked_at_listener = False
    while True:
        try:
            md = admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            why = err.str() if isinstance(err, KafkaError) else repr(exc)
        else:
            return None if md.brokers else (KafkaUnavailable, "metadata lists no broker")
        admin.poll(0)
        refused = _refusal(errors, conf)
        if refused is None and not looked_at_listener:
            looked_at_listener = True  # once: a listener of the other protocol reports nothing
            refused = _protocol_mismatch(conf)
        if refused is not None:
            return refused
        if time.monotonic() >= deadline:
            return KafkaUnavailable, f"no metadata within {timeout:.0f}s ({why})"


def _refusal(
    errors: Iterable[KafkaError], conf: dict[str, Any]
) -> tuple[type[KafkaProblem], str] | None:
    """A refusal among librdkafka's errors (no retry cures it), or None."""
    for err in errors:
        if err.code() == KafkaError._AUTHENTICATION:
            return KafkaLoginRefused, librdkafka_reason(err)
        if err.code() == KafkaError._SSL and not _CUT_SHORT.search(err.str()):
            return KafkaTLSMismatch, tls_reason(err, conf)
    return None


#: A TLS error that only says the connection went away (a broker stopping mid-handshake):
#: no verdict on the TLS settings.
_CUT_SHORT = re.compile(r"unexpected eof|disconnected|connection reset|broken pipe", re.I)


def librdkafka_reason(err: KafkaError) -> str:
    """librdkafka's error text without the broker it came from and its timing (both vary)."""
    text = re.sub(r"^[a-z_]+://\S+: ", "", err.str())
    return re.sub(r"\s*\(after \d+ms in state [^)]*\)$", "", text)


def _addresses(bootstrap: str) -> list[tuple[str, int]]:
    out = []
    for address in (a.strip() for a in bootstrap.split(",")):
        host, _, port = address.rpartition(":")
        if port.isdigit():
            out.append((host.strip("[]") or "127.0.0.1", int(port)))
    return out


def _protocol_mismatch(conf: dict[str, Any]) -> tuple[type[KafkaProblem], str] | None:
    """A listener of the other protocol than the client's: a TLS client's ClientHello closes a
    plaintext listener's connection, and a TLS listener closes a plaintext client's, both
    looking like a broker going away. Each is told by asking the listener in its own protocol."""
    protocol = str(conf.get("security.protocol", "PLAINTEXT")).upper()
    for host, port in _addresses(str(conf.get("bootstrap.servers", ""))):
        if protocol.endswith("SSL"):
            if speaks_plain_kafka(host, port):
                why = f"the listener is plaintext, security_protocol is {protocol}"
                return KafkaTLSMismatch, why
        elif speaks_tls(host, port):
            return KafkaTLSMismatch, f"the listener expects TLS, security_protocol is {protocol}"
    return None


def speaks_tls(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether the listener at host:port answers a TLS ClientHello (certificate not checked)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return True
    except ssl.SSLError as exc:
        return "alert" in str(exc).lower()  # it answered in TLS, refusing something else
    except OSError:
        return False


def speaks_plain_kafka(host: str, port: int, timeout: float = 3.0) -> bool:
    """Whether the listener at host:port answers a plaintext Kafka ApiVersions request."""
    client_id = b"streamer-probe"
    correlation = 0x5354524D
    body = struct.pack(">hhih", 18, 0, correlation, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = sock.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _size, answered = struct.unpack(">ii", head)
    return bool(answered == correlation)


def tls_reason(err: KafkaError, conf: dict[str, Any]) -> str:
    """Why a TLS handshake failed. librdkafka says "certificate verify failed" (and suggests
    ssl.ca.location) for a host name mismatch too; Python's ssl module repeats the handshake
    with the same CA and says which check failed."""
    reason = librdkafka_reason(err)
    if "verify failed" not in reason:
        return reason
    addresses = _addresses(str(conf.get("bootstrap.servers", "")))
    if not addresses:
        return reason
    host, port = addresses[0]
    ca = conf.get("ssl.ca.location")
    try:
        context = ssl.create_default_context(
            cafile=ca if ca and os.path.isfile(ca) else None,
            capath=ca if ca and os.path.isdir(ca) else None,
        )
        with (
            socket.create_connection((host, port), timeout=5.0) as sock,
            context.wrap_socket(sock, server_hostname=host),
        ):
            return reason
    except ssl.SSLCertVerificationError as exc:
        message = str(exc.verify_message)
        if "mismatch" in message.lower():
            message += "; hostname verification is on"
        return f"certificate verify failed ({message})"
    except (OSError, ValueError):
        return reason


#: Errors that mean "not allowed", on a topic or a group.
_DENIED = {KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.GROUP_AUTHORIZATION_FAILED}


def denied_access(conf: dict[str, Any], needs: Needs, timeout: float = 5.0) -> list[str]:
    """What ``needs`` asks and the ACLs do not allow ("WRITE on topic 'x'"). A topic that does
    not exist, or a broker that does not tell, is no denial: the command finds out itself."""
    wanted: dict[str, list[str]] = {}
    for op, names in (("READ", needs.read), ("WRITE", needs.write), ("DESCRIBE", needs.describe)):
        for name in names:
            wanted.setdefault(name, []).append(op)
    admin = AdminClient({**conf, "log_level": 0})
    denied: list[str] = []
    if wanted:
        futures = admin.describe_topics(
            TopicCollection(list(wanted)),
            include_authorized_operations=True,
            request_timeout=timeout,
        )
        for name, ops in wanted.items():
            granted = _granted(futures[name])
            denied += [f"{op} on topic '{name}'" for op in ops if not _allows(granted, op)]
    for group in (needs.group, *needs.more_groups):
        if group and not _allows(_group_granted(admin, group, timeout), "READ"):
            denied.append(f"READ on group '{group}'")
    return denied


def _allows(granted: set[str] | None, op: str) -> bool:
    return granted is None or op in granted or "ALL" in granted


def _granted(future: Any) -> set[str] | None:
    """The operations the ACLs allow on one described resource; None when unknown."""
    try:
        described = future.result()
    except KafkaException as exc:
        return set() if exc.args and exc.args[0].code() in _DENIED else None
    ops = described.authorized_operations
    return None if ops is None else {op.name for op in ops}


def _group_granted(admin: AdminClient, group: str, timeout: float) -> set[str] | None:
    """``_granted`` for a consumer group, asked again while its coordinator is still moving."""
    deadline = time.monotonic() + timeout
    while True:
        future = admin.describe_consumer_groups(
            [group], include_authorized_operations=True, request_timeout=timeout
        )[group]
        try:
            future.result()
        except KafkaException as exc:
            if _coordinator_moving(exc) and time.monotonic() < deadline:
                time.sleep(0.2)
                continue
        return _granted(future)


def _coordinator_moving(exc: KafkaException) -> bool:
    """A group's coordinator still loading or moving (a group never used before): ask again."""
    err = exc.args[0] if exc.args else None
    return isinstance(err, KafkaError) and (
        err.retriable()
        or err.code()
        in {
            KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_NOT_AVAILABLE,
            KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        }
    )
