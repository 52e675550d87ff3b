"""The record shapes of ``kumomta_records``, proven inside a real KumoMTA (``kumod``).

A policy in a temporary folder: spool and local logs there, an ESMTP listener on 127.0.0.1, a log
hook from KumoMTA's own ``policy-extras.log_hooks`` whose Lua constructor stands in for the
Kafka producer (it refuses one recipient's records for good), a ``smtp_server_rcpt_to`` policy
that refuses one user, and mail to a Lua sink. One SMTP session of Python's ``smtplib`` then
drives it. KumoMTA's local logs must hold what streamer expects, and streamer must count them as
the mail they record.

``kumod`` is found as its users install it: ``KUMOD`` in the environment, else ``kumod`` on
``PATH``, else ``/opt/kumomta/sbin/kumod``; its Lua modules in ``share/`` beside ``bin/`` or
``sbin/``. Missing, the test is skipped naming what to install; with ``CI=true`` it fails.
"""

from __future__ import annotations

import json
import smtplib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kumomta_schema as schema
import pytest
from kumod_harness import find_kumod, running_kumod, share_folder
from typer.testing import CliRunner

from streamer.cli import _register, app
from streamer.inputs import InputError, expand_inputs, read_lines
from streamer.ports import free_port
from streamer.records import (
    LOG_HOOK_TYPE,
    is_log_hook_record,
    recipients,
    rejected_recipient,
)

pytestmark = pytest.mark.timeout(120)

POLICY = """
package.path = '{share}/?.lua;' .. package.path
local kumo = require 'kumo'
local log_hooks = require 'policy-extras.log_hooks'

log_hooks:new {{
  name = 'kafka',
  constructor = function(domain, tenant, campaign)
    local connection = {{}}
    function connection:send(message)
      if tostring(message:recipient()):find('hookfail') then
        kumo.reject(500, 'broker refused the record')
      end
      return 'sent to kafka'
    end
    function connection:close() end
    return connection
  end,
}}

kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{tmp}/spool/data' }}
  kumo.define_spool {{ name = 'meta', path = '{tmp}/spool/meta' }}
  kumo.configure_local_logs {{ log_dir = '{tmp}/logs', max_segment_duration = '1 second' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{smtp}', relay_hosts = {{ '127.0.0.1' }} }}
  kumo.start_http_listener {{ listen = '127.0.0.1:{http}' }}
end)

kumo.on('smtp_server_rcpt_to', function(recipient)
  if recipient.user == 'refused' then
    kumo.reject(550, '5.1.1 no such user here')
  end
end)

"""


#: Mail to ``sink.invalid`` goes to a Lua sink that accepts it (a Delivery record).
SINK_POLICY = """
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain == 'sink.invalid' then
    return kumo.make_queue_config {{
      protocol = {{ custom_lua = {{ constructor = 'make.sink' }} }},
    }}
  end
end)

kumo.on('make.sink', function(domain, tenant, campaign)
  local sink = {{}}
  function sink:send(message) return 'ok' end
  function sink:close() end
  return sink
end)
"""
POLICY += SINK_POLICY


def _read_logs(folder: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for item in expand_inputs([str(folder)])
        for line in read_lines(item)
        if line.strip()
    ]


@contextmanager
def kumod_running(tmp_path: Path, policy: str) -> Iterator[smtplib.SMTP]:
    """A real kumod running ``policy`` (formatted with ``share``, ``tmp``, ``smtp``, ``http``:
    its Lua modules, ``tmp_path``, the listeners' ports); yields an SMTP client connected to
    it, and stops it cleanly afterwards (which closes the last log segment)."""
    kumod = find_kumod()
    (tmp_path / "logs").mkdir()
    smtp = free_port("127.0.0.1")
    path = tmp_path / "policy.lua"
    path.write_text(
        policy.format(
            share=share_folder(kumod), tmp=tmp_path, smtp=smtp, http=free_port("127.0.0.1")
        )
    )
    with running_kumod(kumod, path, smtp, tmp_path / "kumod.log"):
        yield smtplib.SMTP("127.0.0.1", smtp, timeout=10)


@pytest.fixture
def kumod_logs(tmp_path: Path) -> Iterator[Path]:
    """Run the session against a real kumod; yields its local log folder, complete."""
    with kumod_running(tmp_path, POLICY) as client:
        _session(client)
        # every message delivered and its hook records logged: 3 deliveries, 13 hook records
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1.5)  # closed segments only (one a second)
            try:
                records = _read_logs(tmp_path / "logs")
            except (InputError, ValueError):  # the segment being written
                continue
            if sum(1 for r in records if r["queue"] == "kafka.log_hook") >= 9:
                break
    yield tmp_path / "logs"


def _session(client: smtplib.SMTP) -> None:
    """One transaction: two refusals between accepted recipients, and one refused first."""
    client.ehlo("client.example")
    client.mail("news@acme.example")
    assert client.rcpt("first@sink.invalid")[0] == 250
    assert client.rcpt("refused@sink.invalid")[0] == 550
    assert client.rcpt("second@sink.invalid")[0] == 250
    assert client.rcpt("refused@other.invalid")[0] == 550
    assert client.rcpt("hookfail@sink.invalid")[0] == 250
    assert client.data(b"Subject: test\r\n\r\nhello\r\n")[0] == 250
    client.mail("news@acme.example")
    assert client.rcpt("refused@third.invalid")[0] == 550  # no recipient accepted yet
    client.rset()
    client.quit()


def test_kumod_writes_the_shapes_streamer_expects(kumod_logs: Path) -> None:
    records = _read_logs(kumod_logs)
    assert [p for r in records for p in schema.record_problems(r)] == []
    # Rejections of RCPT TO: the last accepted recipient in `recipient`, the refused in the command
    refusals = [r for r in records if r["type"] == "Rejection"]
    assert sorted((r["recipient"], rejected_recipient(r)) for r in refusals) == [
        ("", "refused@third.invalid"),
        ("first@sink.invalid", "refused@sink.invalid"),
        ("second@sink.invalid", "refused@other.invalid"),
    ]
    assert all(r["id"] == "" and recipients(r) == [rejected_recipient(r)] for r in refusals)
    # the log hook's bookkeeping: its queue, the protocols, the shipped record's recipient
    hook = [r for r in records if is_log_hook_record(r)]
    assert hook and all(r["queue"] == "kafka.log_hook" for r in hook)
    assert all(r["delivery_protocol"] == "Lua" and recipients(r) == [] for r in hook)
    assert not any(r["queue"] == "kafka.log_hook" for r in records if r not in hook)
    failed = [r for r in hook if r["type"] == "Bounce"]
    assert failed and all(r["recipient"] == "hookfail@sink.invalid" for r in failed)
    mail = [r for r in records if r not in hook]
    shipped = {str(r["recipient"]) for r in mail}
    assert {str(r["recipient"]) for r in hook} <= shipped
    deliveries = sorted(r["recipient"] for r in mail if r["type"] == "Delivery")
    assert deliveries == ["first@sink.invalid", "hookfail@sink.invalid", "second@sink.invalid"]
    assert all("bounce_classification" in r for r in records)

    # streamer counts the folder as the mail it records
    _register()
    result = CliRunner().invoke(app, ["classify", "--summary", "--json", str(kumod_logs)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["other_types"]["Delivery"] == 3
    assert doc["other_types"][LOG_HOOK_TYPE] == len(hook)
    assert doc["classified"] == 3  # the refusals; never the hook's Bounces
