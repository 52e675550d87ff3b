"""A small known input for the report's sections (``test_report.py``): two 2-minute periods.

The previous period (minutes 0-1): 4 deliveries and 1 hard bounce to Gmail. This period
(minutes 2-3): 6 deliveries (4 Gmail, one of them to the address that hard-bounced before: it
is no longer suppressed; 2 Yahoo), 2 hard bounces (1 each), 2 Spamhaus blocks and 1 deferral
at Gmail, 1 policy block at Yahoo, an abuse complaint about a Gmail recipient and a not-spam
report about a Yahoo one. Gmail's mail goes out as tenant acme through pool p1 / source ip1,
Yahoo's as tenant beta through p2 / ip2; feedback reports name the tenant but no pool.
"""

from __future__ import annotations

from typing import Any

import kumomta_records as kr

#: kr.T0 is 40 s into a minute: offsets from here start on a minute boundary.
M = 20


def _out(rtype: str, minute: int, n: int, rcpt: str, code: int, enh: str, text: str) -> Any:
    google = rcpt.endswith("@gmail.com")
    tenant, pool = ("acme", "p1") if google else ("beta", "p2")
    return kr.record(
        rtype,
        M + minute * 60 + n,
        recipient=rcpt,
        queue=f"{tenant}@{rcpt.partition('@')[2]}",
        response=kr.smtp_response(code, enh, text),
        egress_pool=pool,
        egress_source="ip1" if google else "ip2",
        meta={"tenant": tenant},
    )


def _delivered(minute: int, n: int, rcpt: str) -> Any:
    return _out("Delivery", minute, n, rcpt, 250, "2.0.0", "OK")


def _feedback(minute: int, n: int, kind: str, rcpt: str, tenant: str) -> Any:
    report = {
        "feedback_type": kind,
        "supplemental_trace": {"recipient": rcpt, "tenant": tenant},
    }
    return kr.record(
        "Feedback", M + minute * 60 + n, recipient="fbl@acme.example", feedback_report=report
    )


UNKNOWN = "The email account that you tried to reach does not exist."
SPAMHAUS = "Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org"
POLICY = "Message not accepted for policy reasons."


def records() -> list[dict[str, Any]]:
    return [
        # the previous period
        *(_delivered(0, i, f"p{i}@gmail.com") for i in range(4)),
        _out("Bounce", 1, 0, "gone@gmail.com", 550, "5.1.1", UNKNOWN),
        # this period
        *(_delivered(2, i, f"d{i}@gmail.com") for i in range(3)),
        _delivered(2, 3, "gone@gmail.com"),
        _delivered(2, 4, "y1@yahoo.com"),
        _delivered(2, 5, "y2@yahoo.com"),
        _out("Bounce", 2, 10, "x@gmail.com", 550, "5.1.1", UNKNOWN),
        _out("Bounce", 3, 0, "y@yahoo.com", 550, "5.1.1", UNKNOWN),
        _out("Bounce", 3, 1, "b1@gmail.com", 550, "5.7.1", SPAMHAUS),
        _out("Bounce", 3, 2, "b2@gmail.com", 550, "5.7.1", SPAMHAUS),
        _out("TransientFailure", 3, 3, "t@gmail.com", 421, "4.7.0", "Try again later"),
        _out("Bounce", 3, 4, "z@yahoo.com", 554, "5.7.9", POLICY),
        _feedback(3, 5, "abuse", "d0@gmail.com", "acme"),
        _feedback(3, 6, "not-spam", "y1@yahoo.com", "beta"),
    ]
