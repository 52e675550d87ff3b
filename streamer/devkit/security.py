"""The local broker's secured listener (``streamer kafka start --secure``): TLS, SCRAM, ACLs.

Everything lives in ``<broker state dir>/security`` (mode 0700), made at the first secure start
and reused afterwards:

- ``ca.pem``/``ca.key``: a private certificate authority; clients trust ``ca.pem``;
- ``broker.pem``: the broker's key and certificate chain (a PEM keystore, which Kafka reads
  with ``ssl.keystore.type=PEM``) for ``localhost`` and ``127.0.0.1``;
- ``misnamed.pem``: the same for ``other.invalid`` only, served by an optional extra listener
  on which every client must refuse the broker (hostname verification);
- ``<user>.password`` (0600): the SCRAM-SHA-512 password of ``worker`` and ``admin``;
- ``<user>.toml``: a streamer config file connecting as that user (``--config``).

The broker enables KRaft's ``StandardAuthorizer``. ``User:ANONYMOUS``, the principal of the
PLAINTEXT and CONTROLLER listeners, is a super user: the controller and every existing plaintext
client keep working, and provisioning goes through that listener. That is acceptable only because
everything listens on 127.0.0.1 (a development broker); a real cluster has no such listener.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from streamer.config import Settings, parse_non_classifiable
from streamer.kafka.admin import (
    TopicError,
    create_topics,
    default_topics,
    stage_groups,
    stage_topics,
)
from streamer.kafka.clients import client_config

SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
WORKER_USER = "worker"
ADMIN_USER = "admin"
SECURE_LISTENER = "SECURE"
MISNAMED_LISTENER = "MISNAMED"
#: The only name in the misnamed listener's certificate (``.invalid`` never resolves).
MISNAMED_HOST = "other.invalid"
CERT_DAYS = 825
CA_DAYS = 3650
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class SecurityError(Exception):
    """Provisioning the secured listener failed; the message says which step and why."""


@dataclass(frozen=True)
class SecurityFiles:
    """The paths of the secured listener's files (see the module docstring)."""

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def broker_keystore(self) -> Path:
        return self.dir / "broker.pem"

    @property
    def misnamed_keystore(self) -> Path:
        return self.dir / "misnamed.pem"

    def password_file(self, user: str) -> Path:
        return self.dir / f"{user}.password"

    def config_file(self, user: str) -> Path:
        return self.dir / f"{user}.toml"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text(encoding="utf-8").strip()


# --- files ------------------------------------------------------------------------------------


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner may read (0600 from the start, then renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    tmp.replace(path)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # Unencrypted PKCS#8: the only unencrypted private-key form Kafka's PEM keystore reads.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "streamer local broker"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _make_ca(files: SecurityFiles) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    subject = _name("streamer local CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(files.ca_key, _key_pem(key))
    files.ca_cert.write_bytes(_cert_pem(cert))
    return key, cert


def _load_ca(files: SecurityFiles) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SecurityError(f"{files.ca_key}: not the EC key streamer made")
    return key, x509.load_pem_x509_certificate(files.ca_cert.read_bytes())


def _server_keystore(
    path: Path,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    dns: list[str],
    ips: list[str],
) -> None:
    """A PEM keystore at ``path``: a new key, its certificate for ``dns``/``ips``, the CA."""
    ca_key, ca_cert = ca
    key = _new_key()
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(path, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))


def _expires_soon(keystore: Path) -> bool:
    cert = x509.load_pem_x509_certificate(keystore.read_bytes())
    return cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=7)


def ensure_material(directory: Path) -> SecurityFiles:
    """The CA, the broker keystores and the users' passwords: made when missing, else kept."""
    files = SecurityFiles(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    if files.ca_cert.exists() and files.ca_key.exists():
        ca = _load_ca(files)
    else:
        ca = _make_ca(files)
        for stale in (files.broker_keystore, files.misnamed_keystore):
            stale.unlink(missing_ok=True)  # signed by a CA that is gone
    wanted = {
        files.broker_keystore: (["localhost"], ["127.0.0.1"]),
        files.misnamed_keystore: ([MISNAMED_HOST], []),
    }
    for keystore, (dns, ips) in wanted.items():
        if not keystore.exists() or _expires_soon(keystore):
            _server_keystore(keystore, ca, dns, ips)
    for user in (WORKER_USER, ADMIN_USER):
        if not files.password_file(user).exists():
            _write_private(files.password_file(user), (secrets.token_urlsafe(24) + "\n").encode())
    return files


# --- broker configuration ---------------------------------------------------------------------


#: Template values of a broker without the secured listener.
PLAIN_TEMPLATE_VALUES = {
    "secure_listeners": "",
    "secure_advertised": "",
    "secure_protocols": "",
    "secure_properties": "",
}


def template_values(
    files: SecurityFiles, secure_port: int, misnamed_port: int | None
) -> dict[str, str]:
    """What ``deploy/kafka/server.properties`` gets for a broker with the secured listener(s)."""
    names = [SECURE_LISTENER] + ([MISNAMED_LISTENER] if misnamed_port is not None else [])
    ports = {SECURE_LISTENER: secure_port, MISNAMED_LISTENER: misnamed_port}
    listeners = "".join(f",{n}://127.0.0.1:{ports[n]}" for n in names)
    lines = [
        "# --- the secured listener(s), written by streamer.devkit.security ---",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # ANONYMOUS: the PLAINTEXT and CONTROLLER listeners (loopback only); admin: SASL_SSL.
        f"super.users=User:ANONYMOUS;User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found=false",
        f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
        "ssl.client.auth=none",
        "ssl.keystore.type=PEM",
        f"ssl.keystore.location={files.broker_keystore}",
    ]
    for name in names:
        lines.append(
            f"listener.name.{name.lower()}.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={_SCRAM_LOGIN}"
        )
    if misnamed_port is not None:
        prefix = f"listener.name.{MISNAMED_LISTENER.lower()}"
        lines += [
            f"{prefix}.ssl.keystore.type=PEM",
            f"{prefix}.ssl.keystore.location={files.misnamed_keystore}",
        ]
    return {
        "secure_listeners": listeners,
        "secure_advertised": listeners,
        "secure_protocols": "".join(f",{n}:SASL_SSL" for n in names),
        "secure_properties": "\n".join(lines) + "\n",
    }


# --- clients, users and ACLs -----------------------------------------------------------------


def client_settings(files: SecurityFiles, user: str) -> dict[str, Any]:
    """The streamer settings of a client of the secured listener logging in as ``user``."""
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": SCRAM_MECHANISM,
        "sasl_username": user,
        "sasl_password_file": str(files.password_file(user)),
        "ssl_ca_location": str(files.ca_cert),
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def write_client_config(
    files: SecurityFiles, user: str, bootstrap: str, settings: Settings
) -> Path:
    """``<user>.toml``: a config file for ``streamer --config`` as ``user`` (no password in it)."""
    keys: dict[str, Any] = {"bootstrap": bootstrap, **client_settings(files, user)}
    topics = {
        "input_topic": settings.input_topic,
        "output_topic": settings.output_topic,
        "dlq_topic": settings.dlq_topic,
        "stats_topic": settings.stats_topic,
        "suppressions_topic": settings.suppressions_topic,
        "group_id": settings.group_id,
    }
    lines = [
        f"# streamer settings for the local broker's SASL_SSL listener as User:{user}.",
        "# Written by `streamer kafka start --secure`; the password is in sasl_password_file.",
        "[kafka]",
        *(f"{k} = {_toml_value(v)}" for k, v in keys.items()),
        "",
        "# The topics and the group the worker principal's ACLs name.",
        "[topics]",
        *(f"{k} = {_toml_value(v)}" for k, v in topics.items()),
    ]
    path = files.config_file(user)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def allow(
    principal: str,
    restype: ResourceType,
    name: str,
    operation: AclOperation,
    pattern: ResourcePatternType = ResourcePatternType.LITERAL,
) -> AclBinding:
    return AclBinding(restype, name, pattern, principal, "*", operation, AclPermissionType.ALLOW)


def worker_acls(principal: str, settings: Settings) -> list[AclBinding]:
    """Exactly what a worker needs: read its input in its group, write its outputs, run the
    keyed stages (read the suppression events in ``<group>.suppressions`` and the stats
    partials in ``<group>.stats``, read and write their changelogs), and (for exactly-once)
    use transactional ids ``streamer-<group>-*``. Idempotent producing needs no cluster ACL
    since Kafka 3.0: WRITE on a topic allows ``InitProducerId``."""
    other = parse_non_classifiable(settings.non_classifiable, settings.output_topic)
    outputs = [settings.output_topic, settings.dlq_topic or "", other or ""]
    if settings.analytics:
        outputs += [
            settings.stats_topic,
            settings.stats_rates_topic or "",
            settings.suppressions_topic,
        ]
    acls = [
        allow(principal, ResourceType.TOPIC, settings.input_topic, AclOperation.READ),
        allow(principal, ResourceType.GROUP, settings.group_id, AclOperation.READ),
    ]
    for topic in (t for t in stage_topics(settings) if t):
        outputs.append(topic)
        acls.append(allow(principal, ResourceType.TOPIC, topic, AclOperation.READ))
    for group in stage_groups(settings):
        acls.append(allow(principal, ResourceType.GROUP, group, AclOperation.READ))
    for topic in dict.fromkeys(t for t in outputs if t):
        acls.append(allow(principal, ResourceType.TOPIC, topic, AclOperation.WRITE))
    prefix = f"streamer-{settings.group_id}-"
    for op in (AclOperation.WRITE, AclOperation.DESCRIBE):
        acls.append(
            allow(
                principal, ResourceType.TRANSACTIONAL_ID, prefix, op, ResourcePatternType.PREFIXED
            )
        )
    return acls


def _reason(exc: BaseException) -> str:
    err = exc.args[0] if exc.args else exc
    return str(err.str() if hasattr(err, "str") else err)


def create_acls(admin: AdminClient, acls: Iterable[AclBinding], timeout: float = 30.0) -> None:
    """Add the ACLs (existing ones are fine); SecurityError naming the first refused one."""
    futures = admin.create_acls(list(acls), request_timeout=timeout)
    for binding, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise SecurityError(f"could not create ACL {binding}: {_reason(exc)}") from None


def upsert_users(admin: AdminClient, passwords: dict[str, str], timeout: float = 30.0) -> None:
    """Create or update SCRAM-SHA-512 credentials (works on existing storage, unlike format)."""
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    changes: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, p.encode()) for u, p in passwords.items()
    ]
    futures = admin.alter_user_scram_credentials(changes, request_timeout=timeout)
    for user, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            raise SecurityError(f"could not set the password of {user}: {_reason(exc)}") from None


def wait_for_login(conf: dict[str, Any], topic: str, timeout: float = 30.0) -> None:
    """Until a client with ``conf`` logs in and sees ``topic`` (new credentials and ACLs reach
    the broker through the metadata log, a moment after the controller accepted them)."""
    admin = AdminClient({**conf, "log_level": 0})
    deadline = time.monotonic() + timeout
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic, timeout=min(5.0, max(0.5, deadline - time.monotonic())))
            meta = md.topics.get(topic)
            if meta is not None and meta.error is None:
                return
            why = str(meta.error) if meta is not None else "topic missing"
        except KafkaException as exc:
            why = _reason(exc)
        time.sleep(0.2)
    raise SecurityError(
        f"{conf.get('sasl.username')} cannot use {topic} after {timeout:.0f}s: {why}"
    )


def plain_settings(settings: Settings) -> Settings:
    """``settings`` for the PLAINTEXT listener (provisioning runs as the ANONYMOUS super user)."""
    return settings.model_copy(
        update={
            "security_protocol": "PLAINTEXT",
            "sasl_mechanism": None,
            "sasl_username": None,
            "sasl_password": None,
            "ssl_ca_location": None,
            "ssl_certificate_location": None,
            "ssl_key_location": None,
            "ssl_key_password": None,
            "kafka_extra": {},
        }
    )


def user_settings(files: SecurityFiles, user: str, bootstrap: str, settings: Settings) -> Settings:
    """``settings`` connecting to the secured listener at ``bootstrap`` as ``user``."""
    base = plain_settings(settings).model_dump(exclude={"sasl_password", "ssl_key_password"})
    base.update(bootstrap=bootstrap, **client_settings(files, user))
    return Settings(**base)


def provision(
    files: SecurityFiles, plain_bootstrap: str, secure_bootstrap: str, settings: Settings
) -> dict[str, Path]:
    """SCRAM users, the worker's topics and ACLs, the client config files; returns the config
    file of each user once the worker principal can log in over SASL_SSL."""
    plain = plain_settings(settings)
    admin = AdminClient({"bootstrap.servers": plain_bootstrap, "log_level": 0})
    upsert_users(admin, {u: files.password(u) for u in (WORKER_USER, ADMIN_USER)})
    try:
        create_topics(plain, plain_bootstrap, default_topics(plain))
    except TopicError as exc:
        raise SecurityError(str(exc)) from None
    create_acls(admin, worker_acls(f"User:{WORKER_USER}", plain))
    configs = {
        u: write_client_config(files, u, secure_bootstrap, plain) for u in (WORKER_USER, ADMIN_USER)
    }
    worker = user_settings(files, WORKER_USER, secure_bootstrap, plain)
    wait_for_login(client_config(worker, secure_bootstrap), plain.input_topic)
    return configs
