"""Every way Kafka can refuse a client, through every command that talks to it (``worker``,
``worker --processes 2``, ``topics list``, ``produce``, ``tail``), against the session's secured
local broker: the exact exit status (``streamer.exits``), the exact one ``kafka:`` line, no
password in any output. The line names the cause: a command that waited for a timeout instead
would say "does not answer: no metadata within 10s" (exit 75), so no clock is needed to tell a
refusal reported at once from one found by waiting.

Each case is a config file as a user writes it (``streamer --config``), with one thing wrong.
"""

from __future__ import annotations

import inspect
import os
import re
import secrets
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import test_security_kafka as sec
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from test_security_kafka import Principal, _ca, _login, new_topics, new_user
from worker_harness import WorkerProcess, produce, topic_size, wait_until

from streamer.config import Settings
from streamer.devkit import security
from streamer.devkit.broker import BrokerState, free_port
from streamer.devkit.sample import generate
from streamer.exits import (
    LOGIN_REFUSED_EXIT,
    NOT_AUTHORIZED_EXIT,
    TEMPFAIL_EXIT,
    TLS_MISMATCH_EXIT,
)
from streamer.kafka.admin import default_topics
from streamer.kafka.clients import client_config
from streamer.kafka.probe import KafkaProblem, answers_metadata, check_bootstrap, worker_needs

pytestmark = pytest.mark.timeout(300)

# The security tests' fixtures: a SCRAM user of each test's own, its topics, the admin client.
admin = sec.admin
rules = sec.rules
topics = sec.topics
user = sec.user
workers = sec.workers

ROOT = Path(__file__).resolve().parent.parent
#: The start-up check's own deadline for a metadata answer (``check_bootstrap``'s default, as
#: every command calls it): what a listener that never answers is reported after.
PROBE_TIMEOUT_S = inspect.signature(check_bootstrap).parameters["timeout"].default
#: librdkafka's default ``socket.timeout.ms`` (60 s): a command that waited for the client's own
#: timeouts instead of the probe's would still be running then, and is killed (a failure).
CLIENT_TIMEOUT_S = 60.0

COMMANDS: dict[str, list[str]] = {
    "worker": ["worker", "--metrics-port", "0", "--web-port", "0"],
    "worker --processes 2": [
        "worker",
        "--processes",
        "2",
        "--metrics-port",
        "0",
        "--web-port",
        "0",
    ],
    "topics list": ["topics", "list"],
    "produce": ["produce", "records.jsonl"],
    "tail": ["tail", "--max", "1", "--timeout", "5"],
}

LOGIN_ADVICE = "; check sasl_username, sasl_password and sasl_mechanism"
TLS_ADVICE = "; check security_protocol and ssl_ca_location"
BAD_CREDENTIALS = (
    "SASL authentication error: Authentication failed during authentication due to invalid "
    "credentials with SASL mechanism SCRAM-SHA-512"
)


@dataclass(frozen=True)
class Case:
    """One thing wrong: where the client connects, what its settings change, what it gets."""

    listener: str  # "secure", "misnamed", "plain" (the PLAINTEXT listener) or "nowhere"
    exit_code: int
    line: str  # after "kafka: Kafka at {bootstrap} " / "kafka: TLS does not match ..."
    settings: dict[str, Any] = field(default_factory=dict)


CASES: dict[str, Case] = {
    "nothing listening": Case(
        "nowhere", TEMPFAIL_EXIT, "kafka: Kafka at {b} does not answer: nothing accepts connections"
    ),
    "wrong password": Case(
        "secure",
        LOGIN_REFUSED_EXIT,
        f"kafka: Kafka at {{b}} refused the login: {BAD_CREDENTIALS}{LOGIN_ADVICE}",
        {"sasl_password_file": "WRONG"},
    ),
    "unknown user": Case(
        "secure",
        LOGIN_REFUSED_EXIT,
        f"kafka: Kafka at {{b}} refused the login: {BAD_CREDENTIALS}{LOGIN_ADVICE}",
        {"sasl_username": "nobody-here"},
    ),
    "wrong mechanism": Case(
        "secure",
        LOGIN_REFUSED_EXIT,
        "kafka: Kafka at {b} refused the login: SASL SCRAM-SHA-256 mechanism handshake failed: "
        "Broker: Unsupported SASL mechanism: broker's supported mechanisms: SCRAM-SHA-512"
        + LOGIN_ADVICE,
        {"sasl_mechanism": "SCRAM-SHA-256"},
    ),
    "unknown CA": Case(
        "secure",
        TLS_MISMATCH_EXIT,
        "kafka: TLS does not match Kafka at {b}: certificate verify failed "
        "(self-signed certificate in certificate chain)" + TLS_ADVICE,
        {"ssl_ca_location": "ANOTHER_CA"},
    ),
    "certificate for another name": Case(
        "misnamed",
        TLS_MISMATCH_EXIT,
        "kafka: TLS does not match Kafka at {b}: certificate verify failed (IP address mismatch, "
        "certificate is not valid for '127.0.0.1'.; hostname verification is on)" + TLS_ADVICE,
    ),
    "plaintext client, TLS listener": Case(
        "secure",
        TLS_MISMATCH_EXIT,
        "kafka: TLS does not match Kafka at {b}: the listener expects TLS, security_protocol is "
        "SASL_PLAINTEXT" + TLS_ADVICE,
        {"security_protocol": "SASL_PLAINTEXT"},
    ),
    "TLS client, plaintext listener": Case(
        "plain",
        TLS_MISMATCH_EXIT,
        "kafka: TLS does not match Kafka at {b}: the listener is plaintext, security_protocol is "
        "SASL_SSL" + TLS_ADVICE,
    ),
    "no ACLs": Case("secure", NOT_AUTHORIZED_EXIT, "(per command: see _denied_line)"),
}


def _denied_line(command: str, s: Settings, bootstrap: str, who: str) -> str:
    """What each command needs and a principal without ACLs lacks, in the probe's order."""
    if command.startswith("worker"):
        # the keyed stages read and write their two topics each, each in a group of its own
        stage = [
            s.suppression_events_topic,
            s.suppression_state_topic,
            s.stats_partials_topic,
            s.stats_state_topic,
        ]
        writes = [t for t in default_topics(s) if t != s.input_topic and t not in stage]
        denied = [f"READ on topic '{s.input_topic}'"]
        denied += [f"{op} on topic '{t}'" for t in stage for op in ("READ", "WRITE")]
        denied += [f"WRITE on topic '{t}'" for t in writes]
        denied += [f"READ on group '{s.group_id}{g}'" for g in ("", ".suppressions", ".stats")]
    elif command == "topics list":
        denied = [f"DESCRIBE on topic '{t}'" for t in default_topics(s)]
    elif command == "produce":
        denied = [f"WRITE on topic '{s.input_topic}'"]
    else:
        denied = [f"READ on topic '{s.output_topic}'"]
    return (
        f"kafka: Kafka at {bootstrap} does not allow User:{who} {', '.join(denied)}; "
        "check the principal's ACLs"
    )


def _toml(value: Any) -> str:
    return f'"{value}"'


def write_config(path: Path, kafka: dict[str, Any], s: Settings) -> Path:
    """A config file as a user writes one: connection in [kafka], names in [topics]."""
    names = {
        "input_topic": s.input_topic,
        "output_topic": s.output_topic,
        "dlq_topic": s.dlq_topic,
        "stats_topic": s.stats_topic,
        "suppressions_topic": s.suppressions_topic,
        "group_id": s.group_id,
    }
    lines = ["[kafka]", *(f"{k} = {_toml(v)}" for k, v in kafka.items()), "", "[topics]"]
    lines += [f"{k} = {_toml(v)}" for k, v in names.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def kafka_lines(self) -> list[str]:
        return [ln for ln in self.stderr.splitlines() if ln.startswith("kafka:")]


def run_cli(
    config: Path, args: list[str], workdir: Path, rules_file: Path, timeout: float = 120
) -> Run:
    """The command's exit status and output; still running after ``timeout`` s: a failure
    (``subprocess.TimeoutExpired``), the guard against a hang, never a speed check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "KAFKA_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["STREAMER_STATE_DIR"] = str(workdir / "state")
    env["STREAMER_FILES"] = f'["{rules_file}"]'
    (workdir / "records.jsonl").write_text('{"type": "Bounce"}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "streamer", "--config", str(config), *args],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


#: (config file, bootstrap, secrets that must not show) for a case and a worker's settings
ConfigFor = Callable[[Case, Settings], tuple[Path, str, list[str]]]


@pytest.fixture
def principal_config(
    secure_broker: BrokerState, kafka_bootstrap: str, user: Principal, rules: Path, tmp_path: Path
) -> ConfigFor:
    """Config files as ``user`` (who exists and can log in, with no ACLs unless a test grants
    some)."""
    return _configs_for(secure_broker, kafka_bootstrap, user, rules, tmp_path)


# The matrix below shares one user and one set of topics: every case stops at the start-up
# check (nothing is written, no ACL granted), so no case changes what another sees, and the
# broker makes one user and one worker's topics for the module instead of for every case.
@pytest.fixture(scope="module")
def matrix_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "rules.toml"
    path.write_text(sec.RULES_V1)
    return path


@pytest.fixture(scope="module")
def matrix_user(
    secure_broker: BrokerState, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Principal:
    """The refused cases' user: it exists and can log in, and is never granted an ACL."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap, "log_level": 0})
    return new_user(admin, tmp_path_factory.mktemp("user"))


@pytest.fixture(scope="module")
def matrix_topics(kafka_bootstrap: str, matrix_rules: Path) -> Settings:
    return new_topics(kafka_bootstrap, matrix_rules)


@pytest.fixture(scope="module")
def matrix_config(
    secure_broker: BrokerState,
    kafka_bootstrap: str,
    matrix_user: Principal,
    matrix_rules: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> ConfigFor:
    folder = tmp_path_factory.mktemp("configs")
    return _configs_for(secure_broker, kafka_bootstrap, matrix_user, matrix_rules, folder)


def _configs_for(
    secure_broker: BrokerState, kafka_bootstrap: str, user: Principal, rules: Path, folder: Path
) -> ConfigFor:
    """Factory of config files for ``case`` as ``user``, in ``folder``; once the user can log
    in."""
    assert secure_broker.secure_bootstrap and secure_broker.misnamed_bootstrap
    good: dict[str, Any] = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": user.name,
        "sasl_password_file": str(user.password_file),
        "ssl_ca_location": _ca(secure_broker),
    }
    wrong_password = "wrong-" + secrets.token_urlsafe(16)
    wrong_file = folder / "wrong-password"
    wrong_file.write_text(wrong_password + "\n")
    wrong_file.chmod(0o600)
    listeners = {
        "secure": secure_broker.secure_bootstrap,
        "misnamed": secure_broker.misnamed_bootstrap,
        "plain": kafka_bootstrap,
    }
    conf = client_config(Settings(bootstrap="x", files=[rules], **good), listeners["secure"])
    wait_until(lambda: answers_metadata(conf, 5) is None, 30, "the new user to log in")

    def make(case: Case, s: Settings) -> tuple[Path, str, list[str]]:
        bootstrap = listeners.get(case.listener) or f"127.0.0.1:{free_port()}"
        kafka = {"bootstrap": bootstrap, **good, **case.settings}
        if kafka["sasl_password_file"] == "WRONG":
            kafka["sasl_password_file"] = str(wrong_file)
        if kafka["ssl_ca_location"] == "ANOTHER_CA":
            kafka["ssl_ca_location"] = str(security.ensure_material(folder / "other").ca_cert)
        config = write_config(folder / f"streamer-{uuid.uuid4().hex[:8]}.toml", kafka, s)
        return config, bootstrap, [user.password, wrong_password]

    return make


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case_name", list(CASES))
def test_each_refusal_has_its_exit_status_and_its_one_line(
    matrix_config: ConfigFor,
    matrix_topics: Settings,
    matrix_user: Principal,
    matrix_rules: Path,
    tmp_path: Path,
    case_name: str,
    command: str,
) -> None:
    case = CASES[case_name]
    s = matrix_topics
    config, bootstrap, hidden = matrix_config(case, s)
    run = run_cli(config, COMMANDS[command], tmp_path, matrix_rules)
    if case.exit_code == NOT_AUTHORIZED_EXIT:
        expected = _denied_line(command, s, bootstrap, matrix_user.name)
    else:
        expected = case.line.format(b=bootstrap)
    everything = run.stdout + run.stderr
    assert (run.code, run.kafka_lines) == (case.exit_code, [expected]), everything[-3000:]
    assert "Traceback" not in everything
    assert run.stdout == ""
    for secret in hidden:
        assert secret not in everything


@pytest.mark.parametrize("case_name", list(CASES))
def test_the_check_ends_the_wait_as_soon_as_the_cause_is_known(
    matrix_config: ConfigFor,
    matrix_topics: Settings,
    matrix_user: Principal,
    matrix_rules: Path,
    case_name: str,
) -> None:
    """In process, with a minute's timeout: each refusal ends the check with its own cause. Had
    the check waited the timeout out, it would say "no metadata within 60s" (exit 75) instead:
    the commands above fail at once because the cause is known, not because a timeout ran out."""
    case = CASES[case_name]
    s = matrix_topics
    config, bootstrap, _ = matrix_config(case, s)
    doc = tomllib.loads(config.read_text())
    settings = Settings(**doc["kafka"], **doc["topics"], files=[matrix_rules])
    with pytest.raises(KafkaProblem) as info:
        check_bootstrap(settings, bootstrap, timeout=60, needs=worker_needs(settings))
    if case.exit_code == NOT_AUTHORIZED_EXIT:
        expected = _denied_line("worker", s, bootstrap, matrix_user.name)
    else:
        expected = case.line.format(b=bootstrap)
    assert (info.value.exit_code, f"kafka: {info.value}") == (case.exit_code, expected)


def test_a_worker_without_its_group_acl_is_told_so(
    secure_broker: BrokerState,
    principal_config: ConfigFor,
    topics: Callable[[], Settings],
    admin: AdminClient,
    user: Principal,
    rules: Path,
    tmp_path: Path,
) -> None:
    """Every topic ACL but not the group's: the group is named, and nothing else."""
    s = topics()
    acls = [b for b in security.worker_acls(user.principal, s) if b.name != s.group_id]
    security.create_acls(admin, acls)
    config, bootstrap, hidden = principal_config(CASES["no ACLs"], s)
    _login(secure_broker, user, rules, s.input_topic)  # the ACLs reached the broker
    run = run_cli(config, COMMANDS["worker"], tmp_path, rules)
    assert run.code == NOT_AUTHORIZED_EXIT, run.stderr[-3000:]
    assert run.kafka_lines == [
        f"kafka: Kafka at {bootstrap} does not allow User:{user.name} READ on group "
        f"'{s.group_id}'; check the principal's ACLs"
    ]
    assert all(secret not in run.stdout + run.stderr for secret in hidden)


@pytest.mark.long
def test_a_listener_that_never_answers_is_temporary(
    matrix_config: ConfigFor, matrix_topics: Settings, matrix_rules: Path, tmp_path: Path
) -> None:
    """Something accepts connections and says nothing (a broker stuck starting): exit 75 at
    the probe's own deadline, which the line names, not after librdkafka's timeouts (the
    command is given less than those to finish)."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        bootstrap = f"127.0.0.1:{silent.getsockname()[1]}"
        config, _, hidden = matrix_config(CASES["nothing listening"], matrix_topics)
        text = config.read_text().splitlines()
        text = [f'bootstrap = "{bootstrap}"' if ln.startswith("bootstrap") else ln for ln in text]
        config.write_text("\n".join(text) + "\n")
        run = run_cli(config, COMMANDS["topics list"], tmp_path, matrix_rules, CLIENT_TIMEOUT_S)
    assert run.code == TEMPFAIL_EXIT, run.stderr[-3000:]
    assert len(run.kafka_lines) == 1, run.stderr
    within = f"no metadata within {PROBE_TIMEOUT_S:.0f}s"
    assert re.fullmatch(
        rf"kafka: Kafka at {bootstrap} does not answer: {within} \(.+\)", run.kafka_lines[0]
    )
    assert all(secret not in run.stdout + run.stderr for secret in hidden)


def test_a_write_acl_removed_while_the_worker_runs_stops_it_with_77(
    secure_broker: BrokerState,
    kafka_bootstrap: str,
    admin: AdminClient,
    user: Principal,
    topics: Callable[[], Settings],
    workers: Callable[..., WorkerProcess],
    rules: Path,
) -> None:
    """The start-up check passed; then the ACL goes. The refused deliveries stop the worker
    with the same status as a missing ACL at start: no supervisor retries it. (At-least-once
    mode; in exactly-once mode librdkafka names the refusal in the failed transaction only at
    times, else the worker exits 1.)"""
    s = topics()
    security.create_acls(admin, security.worker_acls(user.principal, s))
    _login(secure_broker, user, rules, s.input_topic)
    w = workers("w-revoked", s, user, "--at-least-once")
    first = list(generate(200, seed=5, max_message_bytes=sec.MAX_BYTES))
    produce(kafka_bootstrap, s.input_topic, first)
    wait_until(lambda: topic_size(kafka_bootstrap, s.output_topic) >= len(first), 90, "output")
    write = AclBindingFilter(
        ResourceType.TOPIC,
        s.output_topic,
        ResourcePatternType.LITERAL,
        user.principal,
        "*",
        AclOperation.WRITE,
        AclPermissionType.ALLOW,
    )
    for future in admin.delete_acls([write]).values():
        assert future.result(), "the WRITE ACL was there"
    produce(
        kafka_bootstrap, s.input_topic, list(generate(200, seed=6, max_message_bytes=sec.MAX_BYTES))
    )
    wait_until(lambda: not w.alive(), 90, "the worker to stop by itself")
    log = w.log()
    assert w.proc is not None and w.proc.returncode == NOT_AUTHORIZED_EXIT, log[-3000:]
    assert "not authorized to write: check the worker principal's ACLs" in log
    assert "Traceback" not in log and user.password not in log
