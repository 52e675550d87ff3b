"""A real KumoMTA (``kumod``) for tests: found as its users install it (``KUMOD`` in the
environment, else ``kumod`` on ``PATH``, else ``/opt/kumomta/sbin/kumod``; its Lua modules in
``share/`` beside ``bin/`` or ``sbin/``), run on a policy until the test is done. Missing, the
test is skipped naming what to install; with ``CI=true`` it fails."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Lua for a test policy: mail whose queue config names the constructor ``make.sink`` is
#: delivered to a Lua sink that accepts everything.
SINK_LUA = """
kumo.on('make.sink', function(domain, tenant, campaign)
  local sink = {}
  function sink:send(message) return 'ok' end
  function sink:close() end
  return sink
end)
"""


def find_kumod() -> Path:
    for candidate in (os.environ.get("KUMOD"), shutil.which("kumod"), "/opt/kumomta/sbin/kumod"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    message = (
        "kumod not found: install KumoMTA (https://docs.kumomta.com/userguide/installation/) "
        "or set KUMOD to its kumod binary"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run this test: {message}", pytrace=False)
    pytest.skip(message)


def share_folder(kumod: Path) -> Path:
    """KumoMTA's Lua modules (``policy-extras`` ...) installed beside the binary."""
    return kumod.resolve().parent.parent / "share"


@contextlib.contextmanager
def running_kumod(kumod: Path, policy: Path, smtp_port: int, log: Path) -> Iterator[None]:
    """``kumod`` on ``policy`` until the block ends (then a clean stop: SIGTERM, which closes
    its last log segment); the block starts once its SMTP listener answers."""
    args = [str(kumod), "--policy", str(policy)]
    if os.geteuid() == 0:
        args += ["--user", "root"]  # kumod refuses root unless told which user to be
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                smtplib.SMTP("127.0.0.1", smtp_port, timeout=10).quit()
                break
            except OSError:
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, "kumod did not listen within 30 s"
                time.sleep(0.2)
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
