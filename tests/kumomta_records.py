"""KumoMTA log records of the shapes a real KumoMTA writes where they surprise: written for these
tests from KumoMTA's source and docs (never copied from its output), checked by
``kumomta_schema.record_problems``.

- A log hook's bookkeeping records (``kumod``'s ``logging/hooks.rs``, ``policy-extras/
  log_hooks.lua``): every record a hook ships becomes a message of the hook's queue
  (``<name>.log_hook``) with the shipped record's sender and recipients and ``reception_protocol``
  "LogRecord", delivered by the hook's Lua constructor (``make.<name>.log_hook``). Its delivery
  is logged like any message's, in the local log files only (the hook skips "LogRecord" ones):
  a ``Delivery`` when shipped (response code 200, the constructor's return as content), a
  ``TransientFailure``/``Bounce`` when the constructor rejected with 4xx/5xx.
- A ``Rejection`` (``kumod``'s ``smtp_server.rs`` and ``logging/rejection.rs``): ``id`` "", the
  client's command line in ``response.command`` as sent, ``sender``/``recipient`` the
  transaction's state: for a refused ``RCPT TO`` the last recipient accepted before it ("" when
  none), never the refused address.
- A ``Reception`` of a multi-recipient injection (``recipient`` a list), a ``Delivery`` through an
  ``mx_list`` queue (``site`` ``unspecified->mx_list:ADDR@smtp_client``: no MX name in it),
  an ``AdminBounce`` (``site`` "localhost"). ``bounce_classification`` is on every record.
- An ``OOB`` (``kumod``'s ``logging/disposition.rs``, logged when a listener domain with
  ``log_oob`` receives an RFC 3464 report): one per failed recipient of the report, ``id`` the
  *DSN's* id, ``size`` 0, ``sender`` the DSN's first recipient (our return path),
  ``recipient`` the report's Original- (else Final-) Recipient, ``queue``/``meta``/``headers``
  the DSN message's, ``peer_address`` the Reporting-MTA's name, ``response`` the Diagnostic-Code
  split at its first space (code, content) with the Status as ``enhanced_code`` — so the line
  is ``550 5.1.1 5.1.1 ...`` — and the time the report's Last-Attempt-Date.
- A ``Feedback`` (the same file; KumoMTA's FBL guide): the ``Reception`` of an ARF report sent to
  a ``log_arf`` domain, with ``feedback_report`` set; ``recipient`` is the feedback mailbox,
  the complainer is in ``supplemental_trace`` (decoded from the X-KumoRef header KumoMTA adds)
  or ``original_rcpto_to``.
"""

from __future__ import annotations

from typing import Any

NODE = "00000000-0000-1000-8000-0242ac110002"
T0 = 1_796_500_000  # 2026-12-06T...Z
SENDER = "news@mail.acme.example"


def _time(t: int, frac: str = "123456789") -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac}Z"


def record(rtype: str, n: int, **fields: Any) -> dict[str, Any]:
    """A record of ``rtype`` at ``T0 + n`` seconds with every field KumoMTA writes (in its
    order); ``fields`` override."""
    t = T0 + n
    rec: dict[str, Any] = {
        "type": rtype,
        "id": f"{n:08x}f1b111f1a020327f6cc59d27",
        "sender": SENDER,
        "recipient": "someone@example.com",
        "queue": "acme@example.com",
        "site": "",
        "size": 2048,
        "response": {"code": 250, "enhanced_code": None, "content": "", "command": None},
        "peer_address": None,
        "timestamp": t,
        "event_time": _time(t),
        "created": t,
        "created_time": _time(t, "000000001"),
        "num_attempts": 0,
        "bounce_classification": "Uncategorized",
        "egress_pool": None,
        "egress_source": None,
        "source_address": None,
        "feedback_report": None,
        "meta": {},
        "headers": {},
        "delivery_protocol": None,
        "reception_protocol": "ESMTP",
        "nodeid": NODE,
    }
    rec.update(fields)
    return rec


def smtp_response(code: int, enhanced: str | None, content: str, command: str | None = None) -> Any:
    enh = None
    if enhanced:
        c, s, d = (int(x) for x in enhanced.split("."))
        enh = {"class": c, "subject": s, "detail": d}
    return {"code": code, "enhanced_code": enh, "content": content, "command": command}


def reception(n: int, recipients: list[str]) -> dict[str, Any]:
    """A message injected for several recipients: ``recipient`` is a list."""
    return record(
        "Reception",
        n,
        recipient=recipients,
        queue="gmail.com",
        peer_address={"name": "injector.example", "addr": "127.0.0.1"},
        session_id="3c70d2be-42f5-43b3-a2c7-46913a54f3fb",
    )


def outbound(rtype: str, n: int, recipient: str, response: Any) -> dict[str, Any]:
    """A delivery attempt through a queue routed by ``mx_list``: the site names the address,
    the receiving MX is only in ``peer_address.name``."""
    return record(
        rtype,
        n,
        recipient=recipient,
        queue="gmail.com",
        site="unspecified->mx_list:127.0.0.1@smtp_client",
        response=response,
        peer_address={"name": "gmail-smtp-in.l.google.com", "addr": "127.0.0.1"},
        num_attempts=1,
        egress_pool="unspecified",
        egress_source="unspecified",
        source_address={"address": "127.0.0.1:40312"},
        delivery_protocol="ESMTP",
        session_id="eb622e14-a9d9-454c-8986-170829861a28",
    )


def delivered(n: int, recipient: str) -> dict[str, Any]:
    return outbound("Delivery", n, recipient, smtp_response(250, "2.0.0", "OK queued", "."))


def hard_bounce(n: int, recipient: str) -> dict[str, Any]:
    line = "The email account that you tried to reach does not exist."
    return outbound(
        "Bounce", n, recipient, smtp_response(550, "5.1.1", line, f"RCPT TO:<{recipient}>\r\n")
    )


def admin_bounce(n: int, recipient: str) -> dict[str, Any]:
    return record(
        "AdminBounce",
        n,
        recipient=recipient,
        queue="gmail.com",
        site="localhost",
        response=smtp_response(551, "5.6.0", "Administrator bounced via API: test run"),
    )


def rcpt_rejection(n: int, refused: str, last_accepted: str, command: str = "") -> dict[str, Any]:
    """KumoMTA's listener refused ``RCPT TO:<refused>`` by policy; ``recipient`` is the last
    recipient it accepted in the transaction ("" when none)."""
    return record(
        "Rejection",
        n,
        id="",
        recipient=last_accepted,
        queue="",
        size=0,
        response=smtp_response(
            550, "5.1.1", "no such user here", command or f"RCPT TO:<{refused}>"
        ),
        peer_address={"name": "client.example", "addr": "127.0.0.1"},
        reception_protocol=None,
        session_id="3c70d2be-42f5-43b3-a2c7-46913a54f3fb",
    )


def hook_record(
    rtype: str, n: int, shipped: dict[str, Any], response: Any, hook: str = "kafka"
) -> dict[str, Any]:
    """KumoMTA's record of delivering log hook ``hook``'s message made of ``shipped``."""
    queue = f"{hook}.log_hook"
    return record(
        rtype,
        n,
        id=f"{n:08x}c01016f1b111f1a022327f6cc5",
        sender=shipped["sender"],
        recipient=shipped["recipient"],
        queue=queue,
        site=f"unspecified->{queue}@lua:make.{queue}",
        size=790,
        response=response,
        peer_address={"name": f"Lua via make.{queue}", "addr": "0.0.0.0"},
        egress_pool="unspecified",
        egress_source="unspecified",
        delivery_protocol="Lua",
        reception_protocol="LogRecord",
        session_id="ae6d7626-933e-4428-b77d-7092289d30ec",
    )


def hook_delivery(n: int, shipped: dict[str, Any]) -> dict[str, Any]:
    return hook_record("Delivery", n, shipped, smtp_response(200, None, "sent to kafka"))


def hook_bounce(n: int, shipped: dict[str, Any]) -> dict[str, Any]:
    """The hook's constructor refused for good (``kumo.reject(500, ...)``): a hard-looking 5xx
    naming the shipped record's recipient, about no mailbox at all."""
    content = "kafka: recipient unknown topic or partition"
    return hook_record("Bounce", n, shipped, smtp_response(550, "5.1.1", content))


def local_log_with_a_hook() -> list[dict[str, Any]]:
    """A local log of a run with a log hook: mail, refusals, and the hook's bookkeeping (one
    record per shipped record, the Delivery of each hard bounce after it, as KumoMTA logs it).

    Real deliveries: ``ok@gmail.com`` (twice: two messages), and ``kept@gmail.com``, the
    recipient a refused ``RCPT TO`` of ``nobody@yahoo.com`` names in ``recipient``. Hard
    bounces: ``gone1@gmail.com``, ``gone2@gmail.com``. Shipping ok's first delivery failed
    once (a hook Bounce that reads like a hard bounce of ok@gmail.com).
    """
    mail = [
        reception(1, ["ok@gmail.com", "gone1@gmail.com"]),
        delivered(2, "ok@gmail.com"),
        hard_bounce(3, "gone1@gmail.com"),
        hard_bounce(4, "gone2@gmail.com"),
        delivered(5, "kept@gmail.com"),
        rcpt_rejection(6, "nobody@yahoo.com", "kept@gmail.com"),
        rcpt_rejection(7, "Nobody2@Yahoo.com", "", command="rcpt to: <Nobody2@Yahoo.com> X=1"),
        admin_bounce(8, "late@gmail.com"),
        delivered(9, "ok@gmail.com"),
    ]
    out: list[dict[str, Any]] = []
    for i, rec in enumerate(mail):
        out.append(rec)
        out.append(hook_delivery(100 + i, rec))
    out.append(hook_bounce(200, mail[1]))  # shipping ok's delivery failed once
    return out


def oob(
    n: int, recipient: str, *, meta: dict[str, Any] | None = None, status: str = "5.1.1"
) -> dict[str, Any]:
    """KumoMTA's OOB record of one failed recipient of a DSN sent to ``bounce.acme.example``
    (the policy may have set ``meta`` on the DSN at reception)."""
    return record(
        "OOB",
        n,
        id=f"{n:08x}d5f1b111f1a020327f6cc59d",  # the DSN's own id, not the bounced message's
        sender="bounces@bounce.acme.example",
        recipient=recipient,
        queue="bounce.acme.example",
        site="",
        size=0,
        response=smtp_response(550, status, f"{status} <{recipient}>: user unknown"),
        peer_address={"name": "mx.example.net", "addr": "192.0.2.25"},
        meta=meta or {},
        session_id="9a3e5c1d-7b0e-4c3b-8a55-2f1d6c0e9b71",
    )


def feedback(
    n: int, complainer: str, feedback_type: str = "abuse", tenant: str = "acme"
) -> dict[str, Any]:
    """KumoMTA's Feedback record of an ARF report about a message ``tenant`` sent to
    ``complainer``, received at ``fbl@fbl.acme.example``."""
    report = {
        "feedback_type": feedback_type,
        "user_agent": "SomeGenerator/1.0",
        "version": "1",
        "arrival_date": _time(T0 + n),
        "incidents": None,
        "original_envelope_id": None,
        "original_mail_from": f"<{SENDER}>",
        "reporting_mta": {"mta_type": "dns", "name": "fbl.mail.example.net"},
        "source_ip": "192.0.2.1",
        "authentication_results": [],
        "original_rcpto_to": [f"<{complainer}>"],
        "reported_domain": ["mail.acme.example"],
        "reported_uri": [],
        "extensions": {},
        "original_message": None,
        "supplemental_trace": {"recipient": complainer, "tenant": tenant},
    }
    return record(
        "Feedback",
        n,
        sender="fbl-reports@mail.example.net",
        recipient="fbl@fbl.acme.example",
        queue="fbl.acme.example",
        response=smtp_response(250, None, "ok"),
        peer_address={"name": "fbl.mail.example.net", "addr": "192.0.2.1"},
        feedback_report=report,
        session_id="1f0c2b7e-5d4a-4e8f-9c3b-6a2d8e1f0b94",
    )
