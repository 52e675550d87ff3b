"""The KumoMTA side of the loop, inside a real KumoMTA (``kumod``), with the policy files of
``deploy/kumomta`` as an operator drops them into ``init.lua``:

- ``streamer_logs``: every log record goes to the real test broker, keyed by message id;
- ``streamer_suppressions``: a recipient present in a real Redis (Debian's redis-server) is
  refused at RCPT TO and at HTTP injection with a 550 saying why, one that is not is accepted;
  a checker in mode "log" accepts and tags; a checker whose Redis is away accepts (fail open)
  or answers 451 (fail closed, ``tempfail``), through KumoMTA's own ``redis`` module.

And ``luac -p`` (Debian's lua5.4) on every policy file. ``kumod`` is found as in
``test_kumod_records``; missing, the test skips naming what to install (fails with CI=true).
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition
from kumod_harness import SINK_LUA, find_kumod, running_kumod, share_folder
from redis_server import RedisServer
from system_tools import require

from streamer.ports import free_port

pytestmark = pytest.mark.timeout(150)

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kumomta"
PREFIX = "streamer:suppressed:"
ENTRY = {
    "recipient": "gone@sink.invalid",
    "label": "InvalidRecipient",
    "rule": {"file": "iana.toml", "label": "InvalidRecipient", "index": 3, "pattern": "x"},
    "response": "550 5.1.1 user unknown",
    "first_seen": 1_790_000_000_000,
    "last_seen": 1_790_000_000_000,
    "count": 1,
}

POLICY = """
package.path = '{deploy}/?.lua;{share}/?.lua;' .. package.path
local kumo = require 'kumo'

require('streamer_logs').setup {{
  bootstrap = '{bootstrap}',
  topic = '{topic}',
  log_parameters = {{ meta = {{ 'streamer_suppressed' }} }},
}}

local suppressions = require('streamer_suppressions')
local enforce = suppressions.new {{ redis = '{redis}', cache_ttl = '5 minutes' }}
local log_only = suppressions.new {{
  redis = '{redis}', mode = 'log', cache_name = 'user.streamer_log_only',
}}
local away_open = suppressions.new {{
  redis = 'redis://127.0.0.1:{dead}/', cache_name = 'user.streamer_away_open',
}}
local away_closed = suppressions.new {{
  redis = 'redis://127.0.0.1:{dead}/', on_redis_error = 'tempfail',
  cache_name = 'user.streamer_away_closed',
}}
-- one checker per test domain: the same KumoMTA shows each setting
local function checker(domain)
  if domain == 'logonly.invalid' then return log_only end
  if domain == 'open.invalid' then return away_open end
  if domain == 'closed.invalid' then return away_closed end
  return enforce
end

kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{tmp}/spool/data' }}
  kumo.define_spool {{ name = 'meta', path = '{tmp}/spool/meta' }}
  kumo.configure_local_logs {{ log_dir = '{tmp}/logs' }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{smtp}', relay_hosts = {{ '127.0.0.1' }} }}
  kumo.start_http_listener {{ listen = '127.0.0.1:{http}' }}
end)

kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  checker(recipient.domain):check_rcpt(recipient)
end)

kumo.on('smtp_server_message_received', function(msg, conn_meta)
  local domain = msg:recipient().domain
  if domain == 'logonly.invalid' then
    log_only:check_message(msg)
  end
end)

kumo.on('http_message_generated', function(msg, auth_info)
  checker(msg:recipient().domain):check_message(msg)
end)

kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  if domain ~= 'streamer.log_hook' then
    return kumo.make_queue_config {{
      protocol = {{ custom_lua = {{ constructor = 'make.sink' }} }},
    }}
  end
end)
"""


def test_luac_accepts_every_policy_file() -> None:
    require("luac5.4", package="lua5.4")
    files = sorted(DEPLOY.glob("*.lua"))
    assert [f.name for f in files] == ["streamer_logs.lua", "streamer_suppressions.lua"]
    for f in files:  # one per call: Debian's luac5.4 5.4.4 crashes on several at once
        done = subprocess.run(["luac5.4", "-p", str(f)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.fixture
def kumod(
    tmp_path: Path, kafka_bootstrap: str, new_topic: Callable[..., str], redis_server: RedisServer
) -> Iterator[dict[str, Any]]:
    """kumod running the policy; yields its ports and topic."""
    binary = find_kumod()
    (tmp_path / "logs").mkdir()
    topic = new_topic(4)
    ports = {"smtp": free_port("127.0.0.1"), "http": free_port("127.0.0.1")}
    policy = tmp_path / "policy.lua"
    text = POLICY.format(
        deploy=DEPLOY,
        share=share_folder(binary),
        tmp=tmp_path,
        bootstrap=kafka_bootstrap,
        topic=topic,
        redis=redis_server.url,
        dead=free_port("127.0.0.1"),  # nothing listens there: Redis away
        **ports,
    )
    policy.write_text(text + SINK_LUA)
    with running_kumod(binary, policy, ports["smtp"], tmp_path / "kumod.log"):
        yield {**ports, "topic": topic}


def _inject(port: int, recipients: list[str]) -> dict[str, Any]:
    body = {
        "envelope_sender": "news@acme.example",
        "content": "Subject: hello\r\n\r\nhello\r\n",
        "recipients": [{"email": r} for r in recipients],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/inject/v1",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def _redis_gets(server: RedisServer) -> int:
    stats = server.client().info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


def _shipped(bootstrap: str, topic: str, done: Callable[[list[Any]], bool]) -> list[Any]:
    """(key, partition, record) of every record in the topic, once ``done`` says enough."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "kumod-probe"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    got: list[Any] = []
    deadline = time.monotonic() + 60
    try:
        while not done(got):
            assert time.monotonic() < deadline, f"records shipped so far: {got}"
            for m in consumer.consume(100, 0.5):
                if m.error() is None:
                    got.append((m.key(), m.partition(), orjson.loads(m.value())))
    finally:
        consumer.close()
    return got


def test_kumod_ships_its_logs_and_refuses_suppressed_recipients(
    kumod: dict[str, Any], kafka_bootstrap: str, redis_server: RedisServer
) -> None:
    client = redis_server.client()
    for address in ("gone@sink.invalid", "gone@logonly.invalid"):
        client.set(PREFIX + address, orjson.dumps({**ENTRY, "recipient": address}))

    smtp = smtplib.SMTP("127.0.0.1", kumod["smtp"], timeout=30)
    smtp.ehlo("client.example")
    smtp.mail("news@acme.example")
    code, text = smtp.rcpt("<Gone@Sink.Invalid>")  # KumoMTA lower-cases the domain
    assert (code, text.decode()) == (
        550,
        "5.1.1 <Gone@sink.invalid> is on the suppression list (hard-bounce InvalidRecipient); "
        "not accepted",
    )
    assert smtp.rcpt("ok@sink.invalid")[0] == 250
    assert smtp.rcpt("gone@logonly.invalid")[0] == 250  # mode "log": accepted, tagged
    assert smtp.rcpt("anyone@open.invalid")[0] == 250  # Redis away, fail open
    code, text = smtp.rcpt("anyone@closed.invalid")  # Redis away, fail closed
    assert (code, text.decode()) == (451, "4.3.0 suppression list unavailable, try again later")
    assert smtp.data(b"Subject: test\r\n\r\nhello\r\n")[0] == 250
    # memoized: one address asked three times is one Redis GET
    gets = _redis_gets(redis_server)
    smtp.mail("news@acme.example")
    assert [smtp.rcpt("again@sink.invalid")[0] for _ in range(3)] == [250, 250, 250]
    assert _redis_gets(redis_server) - gets == 1
    smtp.rset()
    smtp.quit()

    injected = _inject(kumod["http"], ["gone@sink.invalid", "fine@sink.invalid"])
    assert injected["success_count"] == 1 and injected["fail_count"] == 1
    assert injected["failed_recipients"] == ["gone@sink.invalid"]
    assert "is on the suppression list (hard-bounce InvalidRecipient)" in injected["errors"][0]

    def complete(got: list[Any]) -> bool:
        delivered = {r["recipient"] for _k, _p, r in got if r["type"] == "Delivery"}
        return delivered >= {
            "ok@sink.invalid",
            "gone@logonly.invalid",
            "anyone@open.invalid",
            "fine@sink.invalid",
        } and any(r["type"] == "Rejection" for _k, _p, r in got)

    shipped = _shipped(kafka_bootstrap, kumod["topic"], complete)
    # keyed by message id: each message's records in one partition; a Rejection has no id
    for key, _p, record in shipped:
        assert key == (record["id"].encode() if record["id"] else None), record
    partitions: dict[str, set[int]] = {}
    for _k, p, record in shipped:
        if record["id"]:
            partitions.setdefault(record["id"], set()).add(p)
    assert all(len(ps) == 1 for ps in partitions.values())
    # no record of the refused recipients' mail, and never the hook's own bookkeeping
    mail = [r for _k, _p, r in shipped if r["type"] in ("Reception", "Delivery")]
    assert not [r for r in mail if r["recipient"] in ("gone@sink.invalid", "Gone@Sink.Invalid")]
    assert not [r for _k, _p, r in shipped if r.get("reception_protocol") == "LogRecord"]
    refusals = [r for _k, _p, r in shipped if r["type"] == "Rejection"]
    assert any("is on the suppression list" in r["response"]["content"] for r in refusals)
    tagged = [
        r
        for r in mail
        if r["type"] == "Reception" and r["meta"].get("streamer_suppressed") is not None
    ]
    assert [(r["recipient"], r["meta"]["streamer_suppressed"]) for r in tagged] == [
        ("gone@logonly.invalid", "hard-bounce InvalidRecipient")
    ]


# Lua 5.4 (Debian's lua5.4) running the policy's decision logic, with stand-ins named as such:
# `lookup` for the memoized Redis GET (a table, or an error for Redis away) and `parse` for
# kumo.serde.json_parse (an entry already decoded). The same logic ran inside kumod above.
DECIDE = """
package.path = '{deploy}/?.lua;' .. package.path
local s = require 'streamer_suppressions'
local entries = {{ ['streamer:suppressed:ann@example.com'] = {{ label = 'InvalidRecipient' }},
  ['streamer:suppressed:cat@example.com'] = {{ reason = 'complaint' }} }}
local function lookup(key) return entries[key] and key or '' end  -- stand-in: Redis GET
local function away(key) error('connection refused') end           -- stand-in: Redis away
local function parse(key) return entries[key] end                  -- stand-in: json_parse
local reject = s.resolve {{}}
local d = s.decide(reject, lookup, parse, ' <Ann@Example.com> ')
print(d.code .. ' ' .. d.text)
d = s.decide(reject, lookup, parse, 'cat@example.com')
print(d.code .. ' ' .. d.text)
print(tostring(s.decide(reject, lookup, parse, 'bob@example.com')))
print(s.decide(s.resolve {{ mode = 'log' }}, lookup, parse, 'ann@example.com').tag)
print(tostring(s.decide(reject, away, parse, 'ann@example.com')))
d = s.decide(s.resolve {{ on_redis_error = 'tempfail' }}, away, parse, 'ann@example.com')
print(d.code .. ' ' .. d.text)
print(select(2, pcall(s.resolve, {{ mode = 'drop' }})))
"""


def test_the_policy_decisions_in_lua_and_the_demo_s_refusal_text() -> None:
    from streamer.kafka.suppression_list import Entry, kumomta_refusal

    require("lua5.4", package="lua5.4")
    done = subprocess.run(
        ["lua5.4", "-"], input=DECIDE.format(deploy=DEPLOY), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:6] == [
        "550 5.1.1 <Ann@Example.com> is on the suppression list (hard-bounce "
        "InvalidRecipient); not accepted",
        "550 5.1.1 <cat@example.com> is on the suppression list (complaint); not accepted",
        "nil",
        "hard-bounce InvalidRecipient",
        "nil",  # Redis away, fail open
        "451 4.3.0 suppression list unavailable, try again later",  # fail closed
    ]
    assert lines[6].endswith("mode must be 'reject' or 'log', not drop")
    # the demo shows the refusal the policy gives
    assert kumomta_refusal(Entry("ann@example.com", {"label": "InvalidRecipient"})) == (
        "550 5.1.1 <ann@example.com> is on the suppression list (hard-bounce InvalidRecipient); "
        "not accepted"
    )
    assert kumomta_refusal(Entry("cat@example.com", {"reason": "complaint"})) == lines[1]
