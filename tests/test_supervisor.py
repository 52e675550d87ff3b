"""``streamer worker --processes N``: the supervisor with real child processes.

The first tests run the supervisor over small Python children (the supervisor is what is under
test: restarts, back-off, giving up, signals); the last runs ``streamer worker --processes 2``
against the real broker: every record comes out, one ``/metrics`` and ``/status`` for both
children, a child killed with SIGKILL is replaced without loss, SIGTERM drains and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from worker_harness import (
    RULES_V1,
    WorkerProcess,
    produce,
    read_topic,
    stop_story,
    topic_size,
    uncommitted,
    wait_until,
)

from streamer.config import Settings
from streamer.devkit.sample import generate, record_identity
from streamer.worker.exits import PERMANENT_EXITS, TEMPFAIL_EXIT
from streamer.worker.supervisor import (
    SUPERVISOR_PID_ENV,
    Child,
    RestartPolicy,
    Supervisor,
    child_environment,
)

pytestmark = pytest.mark.timeout(180)

FAST = RestartPolicy(max_crashes=3, window_s=30.0, first_backoff_s=0.05, max_backoff_s=0.2)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _env(child: Child) -> dict[str, str]:
    return {**os.environ, "CHILD_ID": child.worker_id}


def _run_in_thread(sup: Supervisor) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(sup.run()), daemon=True)
    thread.start()
    return thread, result


def _wait_running(sup: Supervisor, n: int) -> None:
    wait_until(lambda: sum(c.state == "running" for c in sup.children) == n, 10, "children")


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(first_backoff_s=0.5, max_backoff_s=4.0)
    assert [policy.backoff(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_child_environment_keeps_precedence_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    flags = {
        "files": [Path("/r/a.toml"), Path("/r/b.toml")],
        "exactly_once": True,
        "batch_size": 77,
        "group_id": None,  # not given on the command line: the child resolves it itself
    }
    env = child_environment(
        {"STREAMER_GROUP_ID": "from-env", "STREAMER_BATCH_SIZE": "5"},
        flags,
        {"worker_id": "w-1", "processes": 1},
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.files == [Path("/r/a.toml"), Path("/r/b.toml")]
    assert s.exactly_once is True
    assert s.batch_size == 77  # the flag wins over the parent's environment
    assert s.group_id == "from-env"
    assert s.worker_id == "w-1" and s.worker_processes == 1


def test_a_crash_looping_child_stops_the_supervisor_with_exit_1() -> None:
    sup = Supervisor(
        2,
        "w",
        _env,
        command=_python(
            "import os, sys, time\nif os.environ['CHILD_ID'] == 'w-1': sys.exit(3)\ntime.sleep(60)"
        ),
        policy=FAST,
        drain_timeout_s=10,
    )
    assert sup.run() == 1
    # the healthy child (a minute's sleep) was stopped by the supervisor, not waited for
    crashed, healthy = sup.children[1], sup.children[0]
    assert crashed.restarts == FAST.max_crashes - 1 and crashed.last_exit == 3
    assert healthy.restarts == 0 and healthy.last_exit == -signal.SIGTERM  # stopped by us


def _ready(sup: Supervisor, marks: Path) -> bool:
    """Every running child has installed its handlers (each writes ``marks/<pid>`` then)."""
    return all(c.pid is not None and (marks / str(c.pid)).exists() for c in sup.children)


def test_a_killed_child_is_restarted_in_its_slot_and_sigterm_drains_all(tmp_path: Path) -> None:
    # Each child exits 0 on SIGTERM, after a short "drain".
    code = (
        "import os, pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.2), sys.exit(0)))\n"
        f"pathlib.Path({str(tmp_path)!r}, str(os.getpid())).touch()\n"
        "while True: time.sleep(0.05)"
    )
    sup = Supervisor(2, "w", _env, command=_python(code), policy=FAST, drain_timeout_s=10)
    restarted: list[int] = []
    sup.on_restart = lambda child: restarted.append(child.index)
    thread, result = _run_in_thread(sup)
    _wait_running(sup, 2)
    first_pid = sup.children[0].pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: sup.children[0].restarts == 1, 10, "a restart")
    _wait_running(sup, 2)
    assert sup.children[0].pid != first_pid and sup.children[0].worker_id == "w-0"
    assert restarted == [0]
    wait_until(lambda: _ready(sup, tmp_path), 10, "the children's SIGTERM handlers")
    sup.request_stop("test")
    thread.join(15)
    assert result == [0]
    assert [c.last_exit for c in sup.children] == [0, 0]


def test_a_stop_while_a_crashed_child_waits_for_its_restart_exits_0(tmp_path: Path) -> None:
    """The crash was dealt with when it came (a restart planned): stopped during the back-off,
    the supervisor drains the running child and exits 0, starting nothing more."""
    code = (
        "import os, signal, sys, time\n"
        "if os.environ['CHILD_ID'] == 'w-1': sys.exit(1)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"open(os.path.join({str(tmp_path)!r}, str(os.getpid())), 'w').close()\n"
        "while True: time.sleep(0.05)"
    )
    slow = RestartPolicy(first_backoff_s=600.0, max_backoff_s=600.0)
    sup = Supervisor(2, "w", _env, command=_python(code), policy=slow, drain_timeout_s=10)
    thread, result = _run_in_thread(sup)
    wait_until(lambda: sup.children[1].state == "restarting", 10, "the crash's back-off")
    running = sup.children[0]
    wait_until(lambda: (tmp_path / str(running.pid)).exists(), 10, "its SIGTERM handler")
    sup.request_stop("test")
    thread.join(15)
    assert result == [0]
    assert [c.last_exit for c in sup.children] == [0, 1]
    assert sup.children[1].restarts == 0 and sup.children[1].state == "stopped"


def test_a_child_finding_kafka_away_is_retried_as_long_as_it_takes(tmp_path: Path) -> None:
    """Exit 75 (Kafka does not answer) is no crash: more of them than ``max_crashes`` in a row,
    then the broker is back and the child runs."""
    starts = tmp_path / "starts"
    code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        f"p = pathlib.Path({str(starts)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.with_suffix('.new').write_text(str(n))\n"
        "p.with_suffix('.new').replace(p)\n"  # atomic: the test reads it meanwhile
        f"if n <= {FAST.max_crashes + 2}: sys.exit(UNREACHABLE)\n"
        "time.sleep(60)"
    ).replace("UNREACHABLE", str(TEMPFAIL_EXIT))
    sup = Supervisor(1, "w", _env, command=_python(code), policy=FAST, drain_timeout_s=10)
    thread, result = _run_in_thread(sup)
    wait_until(lambda: starts.exists() and int(starts.read_text()) > FAST.max_crashes + 2, 20, "")
    _wait_running(sup, 1)
    assert not result  # still supervising
    assert sup.children[0].restarts == FAST.max_crashes + 2 and not sup.children[0].crashes
    sup.request_stop("test")
    thread.join(15)
    assert result == [0]


@pytest.mark.parametrize("code", sorted(PERMANENT_EXITS))
def test_an_exit_no_restart_cures_stops_the_supervisor_with_that_code(code: int) -> None:
    """A configuration error, a refused login, a TLS mismatch, missing ACLs: the supervisor
    does not retry them (forever, in the 75 case) but stops with the child's own code."""
    sup = Supervisor(2, "w", _env, command=_python(f"import sys; sys.exit({code})"), policy=FAST)
    assert sup.run() == code
    assert all(c.restarts == 0 for c in sup.children)


def test_a_command_that_cannot_start_stops_the_supervisor(tmp_path: Path) -> None:
    sup = Supervisor(2, "w", _env, command=[str(tmp_path / "no-such-program")], policy=FAST)
    assert sup.run() == 1
    assert all(c.restarts == 0 for c in sup.children)


def test_sighup_is_passed_on_and_children_know_their_supervisor(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    code = (
        "import os, signal, sys, time\n"
        f"out = {str(marks)!r} + os.environ['CHILD_ID']\n"
        "def hup(*_):\n"
        f"    open(out, 'w').write(os.environ[{SUPERVISOR_PID_ENV!r}])\n"
        "signal.signal(signal.SIGHUP, hup)\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
        "open(out + '.ready', 'w').close()\n"
        "while True: time.sleep(0.05)"
    )
    sup = Supervisor(2, "w", _env, command=_python(code), policy=FAST)
    thread, result = _run_in_thread(sup)
    _wait_running(sup, 2)
    ready = [Path(f"{marks}w-0.ready"), Path(f"{marks}w-1.ready")]
    wait_until(lambda: all(f.exists() for f in ready), 10, "the children's SIGHUP handlers")
    sup._on_hangup(signal.SIGHUP, None)
    files = [Path(f"{marks}w-0"), Path(f"{marks}w-1")]
    wait_until(lambda: all(f.exists() and f.read_text() for f in files), 10, "SIGHUP marks")
    assert {f.read_text() for f in files} == {str(os.getpid())}
    sup.request_stop("test")
    thread.join(15)
    assert result == [0]


# --- a real `streamer worker --processes 2` ----------------------------------------------------


def _families(port: int) -> dict[str, list[tuple[dict[str, str], float, str]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float, str]]] = {}
    for fam in text_string_to_metric_families(text):
        out[fam.name] = [(s.labels, s.value, s.name) for s in fam.samples]
    return out


def _total(fams: dict[str, list[tuple[dict[str, str], float, str]]], name: str) -> float:
    return sum(v for _labels, v, sample in fams.get(name, []) if sample == f"{name}_total")


def _status(port: int) -> dict[str, object]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
        doc: dict[str, object] = json.loads(resp.read())
        return doc


@pytest.fixture
def supervised(kafka_bootstrap: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES_V1)
    from streamer.ports import free_port

    web = free_port("127.0.0.1")
    inp, out = f"sup.in.{os.getpid()}.{time.time_ns()}", f"sup.out.{time.time_ns()}"
    w = WorkerProcess(
        kafka_bootstrap,
        tmp_path,
        name="sup",
        input_topic=inp,
        output_topic=out,
        group=f"g-{time.time_ns()}",
        rules=rules,
        args=("--processes", "2", "--web-port", str(web)),
        env={"STREAMER_PARTITIONS": "4"},
    )
    w.web_port = web  # type: ignore[attr-defined]
    yield w.start()
    w.cleanup()


def _wait_both_assigned(w: WorkerProcess) -> None:
    """Both children of ``supervised`` own some of the 4 partitions (the parent's /status)."""

    def assigned_by_both() -> bool:
        assert w.alive(), w.log()[-3000:]
        try:
            status = _status(w.web_port)  # type: ignore[attr-defined]
        except OSError:
            return False
        children = status["children"]
        assert isinstance(children, list)
        return len(status["assigned"]) == 4 and all(  # type: ignore[arg-type]
            c["status"] and c["status"]["assigned"] for c in children
        )

    wait_until(assigned_by_both, 90, "both children to own partitions")


def _topics(w: WorkerProcess) -> tuple[str, str]:
    return w.cmd[w.cmd.index("--input-topic") + 1], w.cmd[w.cmd.index("--output-topic") + 1]


@pytest.mark.long
def test_two_processes_share_the_group_with_one_metrics_and_status_endpoint(
    kafka_bootstrap: str, supervised: WorkerProcess
) -> None:
    w = supervised
    port, web = w.metrics_port, w.web_port  # type: ignore[attr-defined]
    inp, out = _topics(w)
    _wait_both_assigned(w)
    # the supervisor says where it serves, and its /stats answers JSON for each child
    assert f"supervisor serving metrics=http://127.0.0.1:{port}/metrics" in w.log()
    assert f"status=http://127.0.0.1:{web}/status" in w.log()
    with urllib.request.urlopen(f"http://127.0.0.1:{web}/stats", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "application/json"
        stats = json.loads(resp.read())
    assert [c["process"] for c in stats["children"]] == [0, 1]
    assert all(set(c["stats"]) == {"session", "rows"} for c in stats["children"])
    first = list(generate(400, seed=3))
    produce(kafka_bootstrap, inp, first)
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= len(first), 60, "outputs")

    fams = _families(port)
    assert _total(fams, "streamer_events_in") == len(first)
    processes = {labels["process"] for labels, _v, _n in fams["streamer_events_in"]}
    assert processes == {"0", "1"}  # both children did part of the work
    assert _total(fams, "streamer_supervisor_restarts") == 0

    # SIGKILL one child: the supervisor starts it again, and nothing is lost.
    status = _status(web)
    victim = status["children"][1]["pid"]  # type: ignore[index]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: _total(_families(port), "streamer_supervisor_restarts") == 1, 30, "restart")
    second = list(generate(400, seed=4))
    produce(kafka_bootstrap, inp, second)
    want = {_identity(m.value) for m in first + second}

    def all_out() -> bool:
        assert w.alive(), w.log()[-3000:]
        return want <= {_identity(r.value) for r in read_topic(kafka_bootstrap, out)}

    wait_until(all_out, 90, "every record after the restart", interval=1.0)

    w.signal(signal.SIGTERM)
    assert w.proc is not None
    assert w.proc.wait(60) == 0, stop_story(w.log())
    for child in status["children"]:  # type: ignore[attr-defined]
        wait_until(lambda pid=child["pid"]: not _alive(pid), 10, "children gone")


def _identity(value: bytes | None) -> tuple[str, str, int]:
    return record_identity(orjson.loads(value or b"{}"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_children_of_a_killed_supervisor_drain_commit_and_exit(
    kafka_bootstrap: str, supervised: WorkerProcess
) -> None:
    """``kill -9`` of the parent: each child notices (``follow_supervisor``), stops as on
    SIGTERM (drains and commits what it produced) and exits; none is left running."""
    w = supervised
    inp, out = _topics(w)
    _wait_both_assigned(w)
    sent = list(generate(400, seed=5))
    produce(kafka_bootstrap, inp, sent)
    wait_until(lambda: topic_size(kafka_bootstrap, out) >= len(sent), 60, "outputs")
    children = [psutil.Process(c["pid"]) for c in _status(w.web_port)["children"]]  # type: ignore[attr-defined,union-attr]
    assert len(children) == 2
    w.kill9()

    def running(p: psutil.Process) -> bool:
        try:
            return p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    wait_until(lambda: not any(running(p) for p in children), 60, "the children to exit")
    group = w.cmd[w.cmd.index("--group-id") + 1]
    assert uncommitted(kafka_bootstrap, group, inp) == 0, "the children committed what they did"
    assert topic_size(kafka_bootstrap, out) == len(sent), "nothing twice"
    log = w.log()
    assert log.count("is gone: stopping") == 2 and log.count("stopping: draining") == 2
