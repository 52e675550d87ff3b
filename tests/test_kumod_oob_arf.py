"""OOB and Feedback records from a real KumoMTA (``kumod``), through streamer's suppressions.

A policy with a bounce domain (``log_oob``) and a feedback domain (``log_arf``), both
``LogThenDrop``, whose ``smtp_server_message_received`` sets the ``tenant`` meta of a DSN from
the VERP return path it was sent to (``bounce-<tenant>@``) and logs that meta key: what README
"Tenant of an OOB" tells operators to do. One SMTP session delivers a message to ann (to a Lua
sink), then sends back a DSN about ann, a DSN about an address never mailed (forged), and an ARF
abuse report whose original message carries KumoMTA's ``X-KumoRef`` trace header. KumoMTA's
logs must hold the shapes ``kumomta_records`` writes (the OOB line ``550 5.1.1 5.1.1 …``), and
folded by streamer they suppress ann (hard-bounce, tenant acme) and the complainer (complaint),
and never the forged address. ``kumod`` is found as in ``test_kumod_records``.
"""

from __future__ import annotations

import base64
import json
import smtplib
import time
from pathlib import Path
from typing import Any

import kumomta_schema as schema
import orjson
import pytest
from test_kumod_records import SINK_POLICY, _read_logs, kumod_running

from streamer.analytics.analyzer import Analyzer
from streamer.analytics.suppression_fold import (
    Change,
    SuppressionStore,
    decode_event,
    public_value,
)
from streamer.analytics.suppressions import with_source
from streamer.classifier import Classifier
from streamer.config import Settings, shipped_rule_files
from streamer.evidence import FEEDBACK_REPORT
from streamer.feedback import feedback_label
from streamer.inputs import InputError
from streamer.records import effective_type, response_line

pytestmark = pytest.mark.timeout(120)

POLICY = """
package.path = '{share}/?.lua;' .. package.path
local kumo = require 'kumo'

kumo.on('init', function()
  kumo.define_spool {{ name = 'data', path = '{tmp}/spool/data' }}
  kumo.define_spool {{ name = 'meta', path = '{tmp}/spool/meta' }}
  kumo.configure_local_logs {{
    log_dir = '{tmp}/logs', max_segment_duration = '1 second', meta = {{ 'tenant' }},
  }}
  kumo.start_esmtp_listener {{ listen = '127.0.0.1:{smtp}', relay_hosts = {{ '127.0.0.1' }} }}
end)

kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'bounce.acme.example' then
    return kumo.make_listener_domain {{ log_oob = 'LogThenDrop' }}
  end
  if domain == 'fbl.acme.example' then
    return kumo.make_listener_domain {{ log_arf = 'LogThenDrop' }}
  end
end)

kumo.on('smtp_server_message_received', function(msg)
  local rcpt = msg:recipient()
  if rcpt.domain == 'bounce.acme.example' then
    local tenant = rcpt.user:match('^bounce%-(.+)$')
    if tenant then
      msg:set_meta('tenant', tenant)
    end
  end
end)
"""
POLICY += SINK_POLICY

RETURN_PATH = "bounce-acme@bounce.acme.example"


def _dsn(recipient: str) -> bytes:
    """An RFC 3464 report from the receiving MTA: ``recipient`` failed, 5.1.1."""
    return (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: <{RETURN_PATH}>\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Final-Recipient: rfc822;{recipient}\r\n"
        "Action: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: user unknown\r\n"
        "\r\n--b1--\r\n"
    ).encode()


def _arf(complainer: str, tenant: str) -> bytes:
    """An RFC 5965 abuse report; the original message keeps KumoMTA's X-KumoRef header."""
    trace = {"_@_": "\\_/", "recipient": complainer, "tenant": tenant}
    kumo_ref = base64.b64encode(json.dumps(trace).encode()).decode()
    return (
        "From: <fbl@mail.example.net>\r\nTo: <fbl@fbl.acme.example>\r\n"
        "Subject: complaint\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="b2"\r\n'
        "\r\n--b2\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n"
        "\r\n--b2\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: SomeGenerator/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{RETURN_PATH}>\r\nOriginal-Rcpt-To: <{complainer}>\r\n"
        "\r\n--b2\r\nContent-Type: message/rfc822\r\nContent-Disposition: inline\r\n\r\n"
        f"From: <news@acme.example>\r\nTo: <{complainer}>\r\nX-KumoRef: {kumo_ref}\r\n"
        "Subject: news\r\n\r\nhello\r\n"
        "\r\n--b2--\r\n"
    ).encode()


def _delivered(logs: Path, recipient: str) -> bool:
    try:
        records = _read_logs(logs)
    except (InputError, ValueError):  # the segment being written
        return False
    return any(r["type"] == "Delivery" and r["recipient"] == recipient for r in records)


def _session(client: smtplib.SMTP, logs: Path) -> None:
    client.ehlo("client.example")
    client.sendmail(RETURN_PATH, ["ann@sink.invalid"], b"Subject: news\r\n\r\nhello\r\n")
    # the DSN comes after the delivery it is about, as it does in the world
    deadline = time.monotonic() + 30
    while not _delivered(logs, "ann@sink.invalid"):
        assert time.monotonic() < deadline, "kumod logged no delivery to ann within 30 s"
        time.sleep(0.5)  # closed segments only (one a second)
    for about in ("ann@sink.invalid", "never@sink.invalid"):
        client.sendmail("", [RETURN_PATH], _dsn(about))
    client.sendmail(
        "fbl@mail.example.net", ["fbl@fbl.acme.example"], _arf("cy@sink.invalid", "acme")
    )
    client.quit()


@pytest.fixture
def kumod_logs(tmp_path: Path) -> list[dict[str, Any]]:
    """The session against a real kumod; its logged records once it stopped."""
    with kumod_running(tmp_path, POLICY) as client:
        _session(client, tmp_path / "logs")
    records = _read_logs(tmp_path / "logs")
    assert records, (tmp_path / "kumod.log").read_text()[-3000:]
    return records


def _fold(records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
    """The records through the worker's analytics (reference path) and the stage's fold, as
    a worker would: the public value per recipient, and the recipients of held OOBs."""
    settings = Settings(bootstrap="127.0.0.1:9")
    classifier = Classifier.from_files(shipped_rule_files())
    analyzer = Analyzer.from_settings(settings)
    store = SuppressionStore(1000, settings.oob_trust_period * 1000)
    changed: dict[str, Any] = {}
    for offset, record in enumerate(records):
        rtype = effective_type(record)
        label = line = rule = evidence = None
        if rtype == "Feedback" and feedback_label(record):
            label, evidence = feedback_label(record), FEEDBACK_REPORT
        elif rtype in ("Bounce", "OOB"):
            line = response_line(record["response"])
            result = classifier.classify(line)
            label, rule, evidence = result.label, result.rule, result.evidence
        _category, _provider, events = analyzer.observe(record, rtype, label, rule, line, evidence)
        for key, value in events:
            change, state = store.apply(
                0, key.decode(), decode_event(with_source(value, 0, offset))
            )
            if change is Change.PUBLIC:
                raw = public_value(key.decode(), state)
                changed[key.decode()] = None if raw is None else orjson.loads(raw)
    return changed, store.untrusted


def test_kumod_oob_and_arf_records_suppress_what_they_should(
    kumod_logs: list[dict[str, Any]],
) -> None:
    records = kumod_logs
    assert [p for r in records for p in schema.record_problems(r)] == []
    oobs = sorted((r for r in records if r["type"] == "OOB"), key=lambda r: str(r["recipient"]))
    assert [r["recipient"] for r in oobs] == ["ann@sink.invalid", "never@sink.invalid"]
    ann = oobs[0]
    assert response_line(ann["response"]) == "550 5.1.1 5.1.1 <ann@sink.invalid>: user unknown"
    assert ann["sender"] == RETURN_PATH and ann["meta"] == {"tenant": "acme"}
    [fb] = [r for r in records if r["type"] == "Feedback"]
    assert fb["recipient"] == "fbl@fbl.acme.example"
    assert fb["feedback_report"]["supplemental_trace"] == {
        "recipient": "cy@sink.invalid",
        "tenant": "acme",
    }
    assert any(r["type"] == "Delivery" and r["recipient"] == "ann@sink.invalid" for r in records)

    entries, held = _fold(records)
    assert set(entries) == {"ann@sink.invalid", "cy@sink.invalid"}
    assert (entries["ann@sink.invalid"]["reason"], entries["ann@sink.invalid"]["tenant"]) == (
        "hard-bounce",
        "acme",
    )
    cy = entries["cy@sink.invalid"]
    assert (cy["reason"], cy["feedback_type"], cy["tenant"]) == ("complaint", "abuse", "acme")
    assert held == ["never@sink.invalid"]  # the forged DSN: held, counted, not suppressing
