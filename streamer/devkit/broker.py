"""The embedded local Apache Kafka broker: real Kafka jars from Maven Central, one KRaft node.

``deploy/kafka/pom.xml`` pins the version. On first use Maven copies the broker's runtime jars into
a cache directory outside the repository (``$STREAMER_CACHE_DIR``, else
``$XDG_CACHE_HOME/streamer``, else ``~/.cache/streamer``), once per version. ``LocalBroker``
formats its storage on first start, launches the JVM in the background on free 127.0.0.1 ports,
waits until it answers a metadata request and records its state in ``<state_dir>/state.json`` so
that ``stop``, ``status`` and every other command find it again.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template
from typing import Any

import psutil
from confluent_kafka import KafkaError, KafkaException, Producer

from streamer import resources
from streamer.config import Settings
from streamer.devkit import security
from streamer.devkit.console import Say, say
from streamer.kafka.probe import (
    KafkaUnavailable,
    Needs,
    answers_metadata,
    check_bootstrap,
    port_accepts,
)

#: ``deploy/kafka`` of the repository, shipped in the wheel as package data (streamer.resources).
DEPLOY_DIR = resources.kafka_dir()
POM = DEPLOY_DIR / "pom.xml"
SERVER_TEMPLATE = DEPLOY_DIR / "server.properties"
LOG4J_CONFIG = DEPLOY_DIR / "log4j2.properties"

#: Bounded heap and a single-threaded collector: the machines this runs on have 2 cores and
#: share them with the workers. ``KAFKA_HEAP_OPTS`` / ``KAFKA_OPTS`` override or add, as in
#: Kafka's own scripts.
DEFAULT_HEAP_OPTS = "-Xms256m -Xmx512m"
DEFAULT_JVM_OPTS = (
    "-XX:+UseSerialGC -XX:CICompilerCount=2 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true"
)
# Jars without which the broker cannot start: a partial Maven copy must not pass for a good one.
_REQUIRED_JARS = (
    "kafka_2.13-{v}.jar",
    "kafka-server-{v}.jar",
    "kafka-raft-{v}.jar",
    "kafka-metadata-{v}.jar",
    "kafka-storage-{v}.jar",
    "kafka-clients-{v}.jar",
    "kafka-group-coordinator-{v}.jar",
    "kafka-transaction-coordinator-{v}.jar",
    "kafka-share-coordinator-{v}.jar",
)
_LOG_TAIL_LINES = 40


class BrokerError(KafkaUnavailable):
    """The local broker could not be provided; the message says why (with the log tail if
    relevant). A KafkaUnavailable, as for a cluster that does not answer."""


# --- jars -------------------------------------------------------------------------------------


def kafka_version() -> str:
    """The Apache Kafka version pinned by ``deploy/kafka/pom.xml``."""
    if not POM.exists():
        raise BrokerError(f"{POM}: missing (it pins the local Kafka broker)")
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(POM).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise BrokerError(f"{POM}: no <kafka.version> property")
    return (node.text or "").strip()


def cache_dir() -> Path:
    """Where downloaded broker jars live (outside the repository, shared by every checkout)."""
    if env := os.environ.get("STREAMER_CACHE_DIR"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (two `start`s at once must not race)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_jars(say: Say = say) -> Path:
    """The directory holding the pinned broker's jars; resolves them with Maven the first time.

    The copy is keyed by the pom's digest, so editing the pom (another version, another log4j)
    resolves again; an interrupted copy never replaces a complete one.
    """
    version = kafka_version()
    home = cache_dir() / f"kafka-{version}"
    libs = home / "libs"
    stamp = home / "pom.sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()

    def ready() -> bool:
        return libs.is_dir() and stamp.exists() and stamp.read_text().strip() == digest

    if ready():
        return libs
    with _locked(home.parent / f".kafka-{version}.lock"):
        if ready():  # another process resolved them while we waited
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError(
                "Maven (mvn) is not installed: it is needed once to fetch the local Kafka "
                "broker's jars from Maven Central. Install Maven and Java 17+, or point "
                "streamer at an existing cluster with KAFKA_BOOTSTRAP."
            )
        tmp = home / f"libs.partial-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        say(f"resolving Apache Kafka {version} jars with Maven into {libs} (once) ...")
        started = time.monotonic()
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            out = (proc.stdout + proc.stderr).strip().splitlines()[-_LOG_TAIL_LINES:]
            raise BrokerError(
                f"Maven could not resolve Apache Kafka {version} (exit {proc.returncode}):\n"
                f"  {shlex.join(cmd)}\n" + "\n".join(out)
            )
        missing = [
            j.format(v=version) for j in _REQUIRED_JARS if not (tmp / j.format(v=version)).exists()
        ]
        if missing:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BrokerError(f"Maven resolved Kafka {version} without {', '.join(missing)}")
        shutil.rmtree(libs, ignore_errors=True)
        tmp.rename(libs)
        stamp.write_text(digest + "\n")
        count = len(list(libs.glob("*.jar")))
        say(f"resolved {count} jars in {time.monotonic() - started:.1f}s")
    return libs


def _java() -> str:
    if home := os.environ.get("JAVA_HOME"):
        candidate = Path(home) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise BrokerError(
            "Java is not installed: the local Kafka broker needs Java 17+ (or set KAFKA_BOOTSTRAP "
            "to use an existing cluster)."
        )
    return java


# --- ports and processes --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# Brokers this process launched: kept so that `stop` can reap them (no zombies in tests).
_children: dict[int, subprocess.Popen[bytes]] = {}


def _process_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _is_our_broker(pid: int, config_file: Path) -> bool:
    """The pid is alive and runs kafka.Kafka on our config (not a recycled pid)."""
    if not _process_alive(pid):
        return False
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "kafka.Kafka" in cmdline and str(config_file) in cmdline


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _process_alive(pid):
            _children.pop(pid, None)
            return True
        time.sleep(0.1)
    return not _process_alive(pid)


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The log's last lines without Java stack frames, which would crowd out the causes."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    kept = [
        ln
        for ln in text.splitlines()
        if not ln.lstrip().startswith("at ") and not re.match(r"\s*\.\.\. \d+ more", ln)
    ]
    return "\n".join(kept[-lines:])


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding, not starting with '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


# --- the broker -------------------------------------------------------------------------------


@dataclass
class BrokerState:
    """What `start` records; ``pid`` is None once the broker was stopped."""

    pid: int | None
    port: int
    controller_port: int
    bootstrap: str
    data_dir: str
    log_file: str
    config_file: str
    kafka_version: str
    cluster_id: str
    started_at: float
    #: Where this run dumps its class-data-sharing archive at exit (first runs only).
    class_archive_dump: str | None = None
    #: ``--secure``: the SASL_SSL listener and the folder of its CA, keystores and users.
    secure_bootstrap: str | None = None
    security_dir: str | None = None
    #: A SASL_SSL listener whose certificate names another host (hostname-verification tests).
    misnamed_bootstrap: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"


@dataclass
class BrokerStatus:
    state: BrokerState | None
    alive: bool  # the recorded pid runs our broker
    answering: bool  # it answered a metadata request
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.alive and self.answering


class LocalBroker:
    """One local single-node broker whose files all live under ``state_dir``."""

    def __init__(self, state_dir: Path | str, *, start_timeout: float = 120.0) -> None:
        self.dir = Path(state_dir).resolve()
        self.state_file = self.dir / "state.json"
        self.data_dir = self.dir / "data"
        self.log_file = self.dir / "broker.log"
        self.config_file = self.dir / "server.properties"
        self.lock_file = self.dir / "lock"
        self.security_dir = self.dir / "security"
        self.start_timeout = start_timeout

    @classmethod
    def for_settings(cls, settings: Settings) -> LocalBroker:
        return cls(Path(settings.state_dir) / "kafka")

    # -- state --
    def read_state(self) -> BrokerState | None:
        try:
            return BrokerState(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"{self.state_file}: unreadable broker state ({exc})") from exc

    def _write_state(self, state: BrokerState) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(state.to_json())
        tmp.replace(self.state_file)

    def status(self, timeout: float = 5.0) -> BrokerStatus:
        state = self.read_state()
        if state is None or state.pid is None:
            return BrokerStatus(state, False, False, "not started")
        if not _is_our_broker(state.pid, Path(state.config_file)):
            return BrokerStatus(state, False, False, f"process {state.pid} is not running")
        why = answers_metadata({"bootstrap.servers": state.bootstrap}, timeout)
        return BrokerStatus(state, True, why is None, why or "")

    # -- start --
    def start(
        self,
        say: Say = say,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        secure: bool = False,
        misnamed_listener: bool = False,
    ) -> tuple[BrokerState, bool]:
        """Start the broker or reuse the running one; returns (state, started_now).

        ``port``/``controller_port`` force the listener ports of a new broker (default: the
        previous ones when still free, else random free ones). ``secure`` adds the SASL_SSL
        listener (streamer.devkit.security; the caller provisions users and ACLs), and
        ``misnamed_listener`` one more whose certificate names another host.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.lock_file):
            previous = self.read_state()
            if previous is not None and previous.pid is not None:
                if _is_our_broker(previous.pid, Path(previous.config_file)):
                    lacking = (secure and not previous.secure_bootstrap) or (
                        misnamed_listener and not previous.misnamed_bootstrap
                    )
                    if lacking:
                        raise BrokerError(
                            f"the local broker (pid {previous.pid}) runs without the secured "
                            "listener asked for: stop it first (streamer kafka stop)"
                        )
                    # Alive: reuse it once it answers (it may still be starting up).
                    self._wait_ready(previous, None)
                    return previous, False
                previous.pid = None  # stale: the process is gone
                self._write_state(previous)
            security = self._security(previous, secure or misnamed_listener, misnamed_listener)
            return self._launch(previous, say, port, controller_port, security), True

    def _security(
        self, previous: BrokerState | None, secure: bool, misnamed: bool
    ) -> tuple[dict[str, str], dict[str, Any]]:
        """(template values, state fields) of the secured listeners; empty ones without."""
        if not secure:
            return dict(security.PLAIN_TEMPLATE_VALUES), {}
        files = security.ensure_material(self.security_dir)

        def reuse(address: str | None) -> int:
            old = int(address.rpartition(":")[2]) if address else 0
            return old if old and _port_is_free(old) else free_port()

        secure_port = reuse(previous.secure_bootstrap if previous else None)
        misnamed_port = (
            reuse(previous.misnamed_bootstrap if previous else None) if misnamed else None
        )
        fields: dict[str, Any] = {
            "secure_bootstrap": f"127.0.0.1:{secure_port}",
            "security_dir": str(files.dir),
            "misnamed_bootstrap": f"127.0.0.1:{misnamed_port}" if misnamed_port else None,
        }
        return security.template_values(files, secure_port, misnamed_port), fields

    def _choose_ports(
        self, previous: BrokerState | None, forced_port: int | None, forced_cport: int | None
    ) -> tuple[int, int]:
        # Same address as last time when possible: clients configured by hand keep working.
        if (
            previous is not None
            and not (forced_port or forced_cport)
            and _port_is_free(previous.port)
            and _port_is_free(previous.controller_port)
        ):
            return previous.port, previous.controller_port
        port = forced_port or free_port()
        cport = forced_cport or free_port()
        while cport == port and not forced_cport:
            cport = free_port()
        return port, cport

    def _launch(
        self,
        previous: BrokerState | None,
        say: Say,
        forced_port: int | None,
        forced_cport: int | None,
        security: tuple[dict[str, str], dict[str, Any]],
    ) -> BrokerState:
        libs = ensure_jars(say)
        java = _java()
        version = kafka_version()
        port, cport = self._choose_ports(previous, forced_port, forced_cport)
        template_values, secure_fields = security
        self.config_file.write_text(
            Template(SERVER_TEMPLATE.read_text()).substitute(
                port=port, controller_port=cport, data_dir=str(self.data_dir), **template_values
            )
        )
        if self.log_file.exists():  # keep the previous run's log for post-mortems
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        jvm, tool_jvm, dump = _jvm_commands(libs, java, self.dir)
        cluster_id = previous.cluster_id if previous else ""
        meta = self.data_dir / "meta.properties"
        if not meta.exists():
            cluster_id = _cluster_id()
            say(f"formatting Kafka storage in {self.data_dir} (first start)")
            self._format(tool_jvm, cluster_id)
        elif not cluster_id:
            cluster_id = _read_cluster_id(meta)
        proc = _spawn([*jvm, "kafka.Kafka", str(self.config_file)], self.dir, self.log_file)
        state = BrokerState(
            pid=proc.pid,
            port=port,
            controller_port=cport,
            bootstrap=f"127.0.0.1:{port}",
            data_dir=str(self.data_dir),
            log_file=str(self.log_file),
            config_file=str(self.config_file),
            kafka_version=version,
            cluster_id=cluster_id,
            started_at=time.time(),
            class_archive_dump=str(dump) if dump else None,
            **secure_fields,
        )
        self._write_state(state)  # recorded at once so that `stop` finds a broker still starting
        try:
            self._wait_ready(state, proc)
        except BrokerError:
            _kill(proc.pid, grace=5.0)
            if dump is not None:
                dump.unlink(missing_ok=True)
            state.pid = None
            self._write_state(state)
            raise
        return state

    def _format(self, jvm: list[str], cluster_id: str) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [*jvm, "kafka.tools.StorageTool", "format"]
        cmd += ["-t", cluster_id, "-c", str(self.config_file)]
        with open(self.log_file, "ab") as log:
            rc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
            ).returncode
        if rc != 0:
            raise BrokerError(
                f"formatting Kafka storage failed (exit {rc}); last lines of {self.log_file}:\n"
                + _tail(self.log_file)
            )

    def _wait_ready(self, state: BrokerState, proc: subprocess.Popen[bytes] | None) -> None:
        """Until the broker answers a metadata request and hands out producer ids; BrokerError
        with the log tail if not."""
        assert state.pid is not None
        deadline = time.monotonic() + self.start_timeout
        why = "its port never opened"
        conf = {"bootstrap.servers": state.bootstrap}
        while time.monotonic() < deadline:
            exited = proc.poll() if proc is not None else None
            if exited is not None or not _process_alive(state.pid):
                code = f" with code {exited}" if exited is not None else ""
                raise BrokerError(
                    f"the Kafka broker exited{code} while starting; last lines of "
                    f"{self.log_file}:\n{_tail(self.log_file)}"
                )
            if port_accepts("127.0.0.1", state.port):
                why = answers_metadata(conf, timeout=2.0) or ""
                if not why:
                    why = hands_out_producer_ids(state.bootstrap, deadline - time.monotonic())
                if not why:
                    return
            time.sleep(0.2)
        raise BrokerError(
            f"the Kafka broker did not answer on {state.bootstrap} within "
            f"{self.start_timeout:.0f}s ({why}); last lines of {self.log_file}:\n"
            + _tail(self.log_file)
        )

    # -- stop --
    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after ``timeout``); False if none was running."""
        with _locked(self.lock_file):
            state = self.read_state()
            if state is None or state.pid is None:
                return False
            running = _is_our_broker(state.pid, Path(state.config_file))
            graceful = _kill(state.pid, grace=timeout) if running else False
            if state.class_archive_dump:
                # Only a JVM that exited normally has written a complete archive.
                _keep_class_archive(Path(state.class_archive_dump), complete=graceful)
                state.class_archive_dump = None
            state.pid = None
            self._write_state(state)
            return running


def _kill(pid: int, grace: float) -> bool:
    """SIGTERM, then SIGKILL after ``grace`` seconds; True when SIGTERM was enough."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)  # Kafka shuts down cleanly on SIGTERM
    if _wait_exit(pid, grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_exit(pid, 10.0)
    return False


def _jvm_commands(
    libs: Path, java: str, logs_dir: Path
) -> tuple[list[str], list[str], Path | None]:
    """The broker's JVM command line, the storage tool's, and the class archive the broker is
    to write when it stops (None: it maps one already).

    Class-data sharing: the first broker to stop dumps the classes it loaded; later JVMs map
    that archive and start ~30% faster on a busy 2-core machine.
    """
    archive = _class_archive(libs, java)
    dump: Path | None = None
    if archive.exists():
        cds = [f"-XX:SharedArchiveFile={archive}"]
    else:
        dump = archive.with_name(f"{archive.name}.{uuid.uuid4().hex[:8]}.partial")
        cds = [f"-XX:ArchiveClassesAtExit={dump}"]
    jvm = [
        java,
        *shlex.split(os.environ.get("KAFKA_HEAP_OPTS", DEFAULT_HEAP_OPTS)),
        *shlex.split(DEFAULT_JVM_OPTS),
        *shlex.split(os.environ.get("KAFKA_OPTS", "")),
        f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        f"{libs}/*",
    ]
    tool_jvm = [*jvm[:1], *(cds if dump is None else []), *jvm[1:]]
    return [*jvm[:1], *cds, *jvm[1:]], tool_jvm, dump


def _spawn(cmd: list[str], cwd: Path, log_file: Path) -> subprocess.Popen[bytes]:
    """The broker process, its output appended to ``log_file``."""
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            # Its own session: a Ctrl-C in the terminal that ran `start` does not reach it.
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc


def stop_when_owner_exits(state_dir: Path | str, owner_pid: int | None = None) -> None:
    """Watch ``owner_pid`` (default: this process) from a small separate process and stop the
    broker in ``state_dir`` when the owner dies without stopping it (a killed test run, say).

    The watcher exits by itself once the broker is no longer running.
    """
    owner = owner_pid or os.getpid()
    code = (
        "import sys; from streamer.devkit.broker import _watch_owner; "
        "_watch_owner(int(sys.argv[1]), sys.argv[2])"
    )
    subprocess.Popen(
        [sys.executable, "-c", code, str(owner), str(Path(state_dir).resolve())],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # survives the owner's death, which is what it waits for
    )


def _watch_owner(owner_pid: int, state_dir: str) -> None:
    broker = LocalBroker(state_dir)
    while True:
        time.sleep(1.0)
        state = broker.read_state()
        if state is None or state.pid is None or not _process_alive(state.pid):
            return
        try:
            owner_gone = psutil.Process(owner_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            owner_gone = True
        if owner_gone:
            broker.stop(timeout=15.0)
            return


def hands_out_producer_ids(bootstrap: str, timeout: float) -> str:
    """An empty string once the broker gives a producer its id, else why not.

    A KRaft broker asks its controller for a block of producer ids on the first request after
    it starts, and until the block arrives answers "coordinator load in progress": every
    idempotent producer of a worker started right then logged a WARNING (librdkafka retries).
    A transactional producer's init here takes that wait (and creates the transaction state
    topic, which exactly-once needs) before the broker counts as started. Its own log lines
    stay off the terminal, as those of the metadata check do. The transactional id is new at
    every start: a known one would only have its epoch bumped, which takes no new id (the
    broker forgets it after ``transactional.id.expiration.ms``, 7 days).
    """
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"streamer-local-broker-ready-{uuid.uuid4().hex[:12]}",
            "log_level": 0,
        }
    )
    try:
        producer.init_transactions(max(1.0, timeout))
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        return err.str() if isinstance(err, KafkaError) else repr(exc)
    finally:
        producer.flush(0)
    return ""


def _class_archive(libs: Path, java: str) -> Path:
    """The CDS archive for these jars and this JVM (a JDK upgrade gets a new one)."""
    real = Path(java).resolve()
    tag = hashlib.sha256(f"{real}:{real.stat().st_mtime_ns}".encode()).hexdigest()[:12]
    return libs.parent / f"classes-{tag}.jsa"


def _keep_class_archive(dump: Path, complete: bool) -> None:
    """Promote a JVM's exit-time class dump to the shared archive (the first one wins)."""
    final = dump.parent / dump.name.split(".jsa.", 1)[0]
    final = final.with_name(final.name + ".jsa")
    try:
        if complete and dump.exists() and dump.stat().st_size > 0 and not final.exists():
            dump.replace(final)
    finally:
        dump.unlink(missing_ok=True)


def _read_cluster_id(meta: Path) -> str:
    for line in meta.read_text().splitlines():
        if line.startswith("cluster.id="):
            return line.split("=", 1)[1].strip()
    return ""


def ensure_broker(settings: Settings, say: Say = say, needs: Needs | None = None) -> str:
    """The bootstrap address to use: ``settings.bootstrap`` when set (checked to answer and to
    allow ``needs``: ``streamer.kafka.probe``), else the local broker's, started on first use
    or reused when already running (its PLAINTEXT listener: a super user)."""
    if settings.bootstrap:
        check_bootstrap(settings, settings.bootstrap, needs=needs)
        return settings.bootstrap
    state, started = LocalBroker.for_settings(settings).start(say)
    if started:
        say(f"local Kafka {state.kafka_version} broker started on {state.bootstrap}")
    return state.bootstrap
