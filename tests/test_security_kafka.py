"""Security against the real broker's SASL_SSL listener (the session broker runs ``--secure``):
TLS with hostname verification, SCRAM-SHA-512 logins, ACLs that allow a worker exactly what it
needs, and secrets that never reach an output.

Each test logs in as a SCRAM user of its own with ACLs for its own topics; inputs are produced and
outputs read over the PLAINTEXT listener (a super user), so what is proven is the worker's side.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourceType,
)
from worker_harness import RULES_V1, WorkerProcess, produce, read_topic, topic_size, wait_until

from streamer.config import Settings
from streamer.devkit import security
from streamer.devkit.broker import BrokerState, free_port
from streamer.devkit.harness import worker_command
from streamer.devkit.sample import SampleMessage, generate, record_identity
from streamer.exits import LOGIN_REFUSED_EXIT, NOT_AUTHORIZED_EXIT
from streamer.kafka.admin import create_topics, default_topics
from streamer.kafka.clients import client_config
from streamer.kafka.probe import KafkaProblem, KafkaTLSMismatch, check_bootstrap

pytestmark = pytest.mark.timeout(180)

MAX_BYTES = 16_384


@dataclass(frozen=True)
class Principal:
    name: str
    password: str
    password_file: Path

    @property
    def principal(self) -> str:
        return f"User:{self.name}"


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES_V1)
    return path


@pytest.fixture
def admin(kafka_bootstrap: str) -> AdminClient:
    """The PLAINTEXT listener's ANONYMOUS super user."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0})


def new_user(admin: AdminClient, folder: Path) -> Principal:
    """A new SCRAM-SHA-512 user; its password in a 0600 file (with a newline, as a Kubernetes
    Secret mount may have it)."""
    name = f"u-{uuid.uuid4().hex[:10]}"
    password = "pw-" + secrets.token_urlsafe(18)
    path = folder / "sasl-password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    security.upsert_users(admin, {name: password})
    return Principal(name, password, path)


@pytest.fixture
def user(secure_broker: BrokerState, admin: AdminClient, tmp_path: Path) -> Principal:
    """A SCRAM-SHA-512 user of this test alone."""
    return new_user(admin, tmp_path)


def _ca(state: BrokerState) -> str:
    assert state.security_dir
    return str(security.SecurityFiles(Path(state.security_dir)).ca_cert)


def sasl_env(state: BrokerState, user: Principal) -> dict[str, str]:
    """A worker's security settings, as a deployment sets them (password from a file)."""
    return {
        "STREAMER_SECURITY_PROTOCOL": "SASL_SSL",
        "STREAMER_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMER_SASL_USERNAME": user.name,
        "STREAMER_SASL_PASSWORD_FILE": str(user.password_file),
        "STREAMER_SSL_CA_LOCATION": _ca(state),
        "STREAMER_MAX_MESSAGE_BYTES": str(MAX_BYTES),
    }


def user_settings(state: BrokerState, user: Principal, bootstrap: str, rules: Path) -> Settings:
    return Settings(
        bootstrap=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user.name,
        sasl_password_file=user.password_file,
        ssl_ca_location=_ca(state),
        files=[rules],
    )


def worker_settings(inp: str, out: str, group: str, rules: Path) -> Settings:
    """The topics and group of a test's worker (what its ACLs name)."""
    return Settings(
        input_topic=inp,
        output_topic=out,
        group_id=group,
        stats_topic=f"{inp}.stats",
        suppressions_topic=f"{inp}.suppressions",
        files=[rules],
    )


@pytest.fixture
def topics(kafka_bootstrap: str, rules: Path) -> Callable[[], Settings]:
    """Factory: the topics of one worker, created over PLAINTEXT (the worker may not)."""
    return lambda: new_topics(kafka_bootstrap, rules)


def new_topics(bootstrap: str, rules: Path) -> Settings:
    """The settings of a new worker whose topics exist (created over PLAINTEXT)."""
    tag = uuid.uuid4().hex[:10]
    s = worker_settings(f"sec.in.{tag}", f"sec.out.{tag}", f"g-sec-{tag}", rules)
    create_topics(s, bootstrap, default_topics(s), partitions=4)
    return s


@pytest.fixture
def workers(
    secure_broker: BrokerState, tmp_path: Path, rules: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str, s: Settings, user: Principal, *args: str) -> WorkerProcess:
        assert secure_broker.secure_bootstrap
        w = WorkerProcess(
            secure_broker.secure_bootstrap,
            tmp_path,
            name=name,
            input_topic=s.input_topic,
            output_topic=s.output_topic,
            group=s.group_id,
            rules=rules,
            args=("--log-format", "text", *args),
            env=sasl_env(secure_broker, user),
        ).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.cleanup()


def _login(state: BrokerState, user: Principal, rules: Path, topic: str) -> None:
    """Until the new user's credentials and ACLs reached the broker (the metadata log)."""
    assert state.secure_bootstrap
    s = user_settings(state, user, state.secure_bootstrap, rules)
    security.wait_for_login(client_config(s, state.secure_bootstrap), topic)


def _identities(messages: list[SampleMessage]) -> set[tuple[str, str, int]]:
    import orjson

    return {
        record_identity(orjson.loads(m.value))
        for m in messages
        if not m.kind.startswith("malformed")
    }


def _out_identities(bootstrap: str, topic: str) -> list[tuple[str, str, int]]:
    import orjson

    return [record_identity(orjson.loads(r.value or b"")) for r in read_topic(bootstrap, topic)]


_COORDINATOR_MOVING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
}


def _committed_parts(c: Consumer, topic: str) -> list[TopicPartition]:
    """The group's committed offsets (negative: none), retried while the group's coordinator
    is still loading (NOT_COORDINATOR on a group never used before)."""
    wanted = [TopicPartition(topic, p) for p in range(4)]
    for _attempt in range(20):
        try:
            return list(c.committed(wanted, timeout=10))
        except KafkaException as exc:
            err = exc.args[0]
            if not (err.retriable() or err.code() in _COORDINATOR_MOVING):
                raise
            time.sleep(0.5)
    return list(c.committed(wanted, timeout=10))


def _committed(bootstrap: str, group: str, topic: str) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        return [tp.offset for tp in _committed_parts(c, topic)]
    finally:
        c.close()


def _lag(bootstrap: str, group: str, topic: str) -> int:
    """Input records not committed by ``group`` yet."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        lag = 0
        for tp in _committed_parts(c, topic):
            _low, high = c.get_watermark_offsets(tp, timeout=10, cached=False)
            lag += high - max(tp.offset, 0)
        return lag
    finally:
        c.close()


def _http(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return str(resp.read().decode())


# --- 1. a worker end to end over SASL_SSL, with exactly the ACLs the README lists ---


@pytest.mark.parametrize("mode", ["at-least-once", "exactly-once"])
def test_worker_over_sasl_ssl_with_only_its_acls_loses_nothing(
    secure_broker: BrokerState,
    kafka_bootstrap: str,
    admin: AdminClient,
    user: Principal,
    topics: Callable[[], Settings],
    workers: Callable[..., WorkerProcess],
    rules: Path,
    mode: str,
) -> None:
    s = topics()
    security.create_acls(admin, security.worker_acls(user.principal, s))
    _login(secure_broker, user, rules, s.input_topic)
    sent = list(generate(3000, seed=77, malformed_fraction=0.02, max_message_bytes=MAX_BYTES))
    produce(kafka_bootstrap, s.input_topic, sent)
    web_port = free_port()
    w = workers(f"w-sec-{mode}", s, user, "--web-port", str(web_port), f"--{mode}")
    dlq = s.dlq_topic or ""

    def all_committed() -> bool:
        assert w.alive(), w.log()[-3000:]
        return _lag(kafka_bootstrap, s.group_id, s.input_topic) == 0

    wait_until(all_committed, 90, "every input committed", interval=0.5)
    status = _http(web_port, "/status")
    assert '"assigned"' in status
    metrics = _http(w.metrics_port, "/metrics")
    assert w.stop() == 0

    good = _identities(sent)
    out = _out_identities(kafka_bootstrap, s.output_topic)
    assert set(out) == good, "every good record came out"
    if mode == "exactly-once":
        assert len(out) == len(good)
    n_bad = len(sent) - len(good)
    assert len(read_topic(kafka_bootstrap, dlq)) == n_bad
    assert sum(o >= 0 for o in _committed(kafka_bootstrap, s.group_id, s.input_topic)) == 4
    log = w.log()
    for text in (log, status, metrics):
        assert user.password not in text
    assert "could not create topics" in log  # no CREATE: the worker found them made for it


# --- 2. a wrong password ---


def test_wrong_password_fails_fast_in_one_line_without_the_password(
    secure_broker: BrokerState,
    admin: AdminClient,
    user: Principal,
    topics: Callable[[], Settings],
    rules: Path,
    tmp_path: Path,
) -> None:
    s = topics()
    security.create_acls(admin, security.worker_acls(user.principal, s))
    _login(secure_broker, user, rules, s.input_topic)  # the user exists and works
    wrong = "wrong-" + secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "KAFKA_"))}
    env.update(sasl_env(secure_broker, user))
    del env["STREAMER_SASL_PASSWORD_FILE"]
    env["STREAMER_SASL_PASSWORD"] = wrong  # from the environment this time
    assert secure_broker.secure_bootstrap
    cmd = [*worker_command(), "--bootstrap", secure_broker.secure_bootstrap]
    cmd += ["--input-topic", s.input_topic, "--output-topic", s.output_topic]
    cmd += ["--group-id", s.group_id, "--files", str(rules), "--metrics-port", "0"]
    cmd += ["--web-port", "0", "--state-dir", str(tmp_path / "state")]
    # Fast because the cause is known: a login the worker kept retrying until a timeout would
    # end in exit 75 ("does not answer"), never 67 with the broker's own reason.
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == LOGIN_REFUSED_EXIT, output
    errors = [ln for ln in output.splitlines() if "uthentication failed" in ln]
    assert len(errors) == 1, output
    assert "invalid credentials" in errors[0] and "SCRAM-SHA-512" in errors[0]
    assert "Traceback" not in output
    assert wrong not in output and user.password not in output
    print(f"\nwrong password: exit {proc.returncode}: {errors[0]}")


# --- 3. a principal without WRITE on the output topic ---


def _without_output_write(principal: str, s: Settings) -> list[object]:
    return [
        b
        for b in security.worker_acls(principal, s)
        if not (b.name == s.output_topic and b.operation == AclOperation.WRITE)
    ]


@pytest.mark.parametrize("grant", ["nothing", "describe"])
def test_missing_write_on_output_stops_the_worker_and_commits_nothing(
    secure_broker: BrokerState,
    kafka_bootstrap: str,
    admin: AdminClient,
    user: Principal,
    topics: Callable[[], Settings],
    workers: Callable[..., WorkerProcess],
    rules: Path,
    grant: str,
) -> None:
    """``nothing``: the output topic is invisible to the worker; ``describe``: it is visible
    but not writable. Either way the worker's start-up check finds the missing ACL (the
    broker's authorized operations), the worker exits ``NOT_AUTHORIZED_EXIT`` with one line
    naming it, and commits nothing; with the ACL added, a restarted worker brings every record
    out."""
    s = topics()
    acls = _without_output_write(user.principal, s)
    if grant == "describe":
        acls.append(
            security.allow(
                user.principal, ResourceType.TOPIC, s.output_topic, AclOperation.DESCRIBE
            )
        )
    security.create_acls(admin, acls)  # type: ignore[arg-type]
    _login(secure_broker, user, rules, s.input_topic)
    sent = list(generate(1000, seed=93, max_message_bytes=MAX_BYTES))
    produce(kafka_bootstrap, s.input_topic, sent)

    w1 = workers(f"w-noacl-{grant}", s, user)
    wait_until(lambda: not w1.alive(), 60, "the worker to stop by itself")
    assert w1.proc is not None and w1.proc.returncode == NOT_AUTHORIZED_EXIT
    log = w1.log()
    assert secure_broker.secure_bootstrap
    assert [ln for ln in log.splitlines() if ln.startswith("kafka:")] == [
        f"kafka: Kafka at {secure_broker.secure_bootstrap} does not allow {user.principal} "
        f"WRITE on topic '{s.output_topic}'; check the principal's ACLs"
    ], log[-2000:]
    assert "Traceback" not in log
    assert all(o < 0 for o in _committed(kafka_bootstrap, s.group_id, s.input_topic))
    assert topic_size(kafka_bootstrap, s.output_topic) == 0
    assert topic_size(kafka_bootstrap, s.dlq_topic or "") == 0, "nothing dead-lettered for it"

    write = security.allow(user.principal, ResourceType.TOPIC, s.output_topic, AclOperation.WRITE)
    security.create_acls(admin, [write])
    wait_until(lambda: _can_describe(secure_broker, user, rules, s.output_topic), 30, "the ACL")
    w2 = workers(f"w-acl-{grant}", s, user)
    wait_until(
        lambda: w2.alive() and topic_size(kafka_bootstrap, s.output_topic) >= len(sent),
        90,
        "every record out after the ACL was added",
        interval=0.5,
    )
    assert w2.stop() == 0
    assert set(_out_identities(kafka_bootstrap, s.output_topic)) == _identities(sent)
    assert sum(o >= 0 for o in _committed(kafka_bootstrap, s.group_id, s.input_topic)) == 4
    assert user.password not in log + w2.log()


def _can_describe(state: BrokerState, user: Principal, rules: Path, topic: str) -> bool:
    try:
        _login(state, user, rules, topic)
    except security.SecurityError:
        return False
    return True


# --- 4. TLS hostname verification ---


def test_a_certificate_for_another_host_is_refused(
    secure_broker: BrokerState, user: Principal, rules: Path
) -> None:
    assert secure_broker.secure_bootstrap and secure_broker.misnamed_bootstrap
    good = user_settings(secure_broker, user, secure_broker.secure_bootstrap, rules)
    assert "ssl.endpoint.identification.algorithm" not in good.kafka_client_config()
    wait_until(
        lambda: _answers(good, secure_broker.secure_bootstrap or ""), 30, "the user to log in"
    )
    bad = user_settings(secure_broker, user, secure_broker.misnamed_bootstrap, rules)
    # Refused at once, not after the timeout: a check that waited it out would raise
    # KafkaUnavailable ("no metadata within 60s"), not the TLS mismatch with its reason.
    with pytest.raises(KafkaTLSMismatch) as info:
        check_bootstrap(bad, secure_broker.misnamed_bootstrap, timeout=60)
    message = str(info.value)
    assert "certificate verify failed" in message
    assert "mismatch, certificate is not valid for '127.0.0.1'" in message
    assert "hostname verification is on" in message
    assert "\n" not in message and user.password not in message
    print(f"\nmisnamed listener: {message}")


def _answers(s: Settings, bootstrap: str) -> bool:
    try:
        check_bootstrap(s, bootstrap, timeout=5)
    except KafkaProblem:  # a login refused, too, until the new user reached the broker
        return False
    return True


def test_acls_of_a_worker_are_exactly_the_documented_ones(tmp_path: Path, rules: Path) -> None:
    s = worker_settings("in", "out", "grp", rules)
    got = {
        (str(b.restype.name), b.name, str(b.resource_pattern_type.name), str(b.operation.name))
        for b in security.worker_acls("User:w", s)
    }
    assert got == {
        ("TOPIC", "in", "LITERAL", "READ"),
        ("GROUP", "grp", "LITERAL", "READ"),
        ("TOPIC", "out", "LITERAL", "WRITE"),
        ("TOPIC", "in.dlq", "LITERAL", "WRITE"),
        ("TOPIC", "in.stats", "LITERAL", "WRITE"),
        ("TOPIC", "in.stats.rates", "LITERAL", "WRITE"),
        ("TOPIC", "in.suppressions", "LITERAL", "WRITE"),
        ("TOPIC", "in.suppressions.events", "LITERAL", "READ"),
        ("TOPIC", "in.suppressions.events", "LITERAL", "WRITE"),
        ("TOPIC", "in.suppressions.state", "LITERAL", "READ"),
        ("TOPIC", "in.suppressions.state", "LITERAL", "WRITE"),
        ("GROUP", "grp.suppressions", "LITERAL", "READ"),
        ("TOPIC", "in.stats.partials", "LITERAL", "READ"),
        ("TOPIC", "in.stats.partials", "LITERAL", "WRITE"),
        ("TOPIC", "in.stats.state", "LITERAL", "READ"),
        ("TOPIC", "in.stats.state", "LITERAL", "WRITE"),
        ("GROUP", "grp.stats", "LITERAL", "READ"),
        ("TRANSACTIONAL_ID", "streamer-grp-", "PREFIXED", "WRITE"),
        ("TRANSACTIONAL_ID", "streamer-grp-", "PREFIXED", "DESCRIBE"),
    }
    assert all(b.permission_type == AclPermissionType.ALLOW for b in security.worker_acls("U", s))


# --- `streamer kafka start --secure`, as a developer runs it ---


@pytest.mark.long
def test_cli_start_secure_on_storage_of_a_plain_start(tmp_path: Path, rules: Path) -> None:
    """A broker first started without ``--secure`` (so SCRAM users cannot come from storage
    formatting) gets its users through the admin API; the printed config file connects as the
    worker principal, which sees and may create nothing beyond its ACLs."""
    from test_broker import _cli, _env

    env = _env(tmp_path / "var", rules)
    t0 = time.monotonic()
    plain = _cli(env, "kafka", "start")
    plain_seconds = time.monotonic() - t0
    assert plain.returncode == 0, plain.stderr
    plain_bootstrap = plain.stdout.strip()
    try:
        assert _cli(env, "kafka", "stop").returncode == 0
        t0 = time.monotonic()
        started = _cli(env, "kafka", "start", "--secure")
        secure_seconds = time.monotonic() - t0
        assert started.returncode == 0, started.stderr
        secure_bootstrap, config = started.stdout.strip().splitlines()
        assert secure_bootstrap.startswith("127.0.0.1:") and secure_bootstrap != plain_bootstrap
        assert "super user" in started.stderr and "development only" in started.stderr
        folder = Path(config).parent
        password_file = folder / "worker.password"
        password = password_file.read_text().strip()
        assert password and password not in started.stdout + started.stderr
        assert password not in Path(config).read_text()
        assert f'sasl_password_file = "{password_file}"' in Path(config).read_text()
        assert (password_file.stat().st_mode & 0o777) == 0o600
        assert ((folder / "ca.key").stat().st_mode & 0o777) == 0o600
        assert (folder.stat().st_mode & 0o777) == 0o700

        with_config = {**env, "STREAMER_CONFIG": config}
        plain_env = {**env, "KAFKA_BOOTSTRAP": plain.stdout.strip()}
        assert _cli(plain_env, "topics", "create", "private.topic").returncode == 0
        listed = _cli(with_config, "topics", "list")
        assert listed.returncode == 0, listed.stderr
        names = {ln.split()[0] for ln in listed.stdout.splitlines()}
        assert names == {
            "kumomta.logs",
            "kumomta.classified",
            "kumomta.logs.dlq",
            "kumomta.stats",
            "kumomta.stats.rates",
            "kumomta.suppressions",
            "kumomta.suppressions.events",
            "kumomta.suppressions.state",
            "kumomta.stats.partials",
            "kumomta.stats.state",
        }, "the worker principal sees its own topics only"
        refused = _cli(with_config, "topics", "create", "worker.made.topic")
        assert refused.returncode == 1 and "Authorization failed" in refused.stderr

        status = _cli(env, "kafka", "status")
        assert f"sasl_ssl:   {secure_bootstrap}" in status.stdout
        again = _cli(env, "kafka", "start", "--secure")  # reused, provisioned again: idempotent
        assert again.returncode == 0 and again.stdout.splitlines()[0] == secure_bootstrap
        assert "already running" in again.stderr
        print(f"\nstart: plain {plain_seconds:.1f}s, --secure {secure_seconds:.1f}s")
    finally:
        _cli(env, "kafka", "stop")
