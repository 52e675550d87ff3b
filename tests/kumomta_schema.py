"""The shape of a KumoMTA JSON log record, as KumoMTA writes it today.

Derived from KumoMTA's reference (docs.kumomta.com, "Log Record") and, where the two differ, from
the type it serialises (``JsonLogRecord`` and ``RecordType`` in the ``kumo-log-types`` crate,
``ARFReport`` for ``feedback_report``, ``Response`` for ``response``); written for these tests,
not copied. Where the prose example and the struct disagree the struct wins, since it is what
goes on the wire: ``feedback_report.version`` is a string, the RFC 5965 ``Original-Rcpt-To``
list is spelled ``original_rcpto_to``.

Each field maps to the JSON types it may hold (``None`` = null). ``REQUIRED`` fields are always
written; ``OMITTED_WHEN_UNSET`` ones are left out (never written as null) when they have no value.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: ``RecordType`` less ``Any`` (which only matches types in KumoMTA's logging configuration).
RECORD_TYPES = frozenset(
    {
        "Reception",
        "Delivery",
        "Bounce",
        "TransientFailure",
        "Expiration",
        "AdminBounce",
        "OOB",
        "Feedback",
        "Rejection",
        "AdminRebind",  # since 2024.09.02
        "DeferredInjectionRebind",  # since 2025.01.23
        "Delayed",  # since 2025.01.23
        "XferOut",  # since 2025.12.02
        "XferIn",  # since 2025.12.02
    }
)
#: ``RecordType::is_bounce_classifiable``: what KumoMTA itself runs through its classifier.
BOUNCE_CLASSIFIABLE = frozenset(
    {"Bounce", "TransientFailure", "Expiration", "AdminBounce", "OOB", "Feedback", "Rejection"}
)

Types = tuple[type | None, ...]
STR: Types = (str,)
INT: Types = (int,)
OBJ: Types = (dict,)
LIST: Types = (list,)
OPT_STR: Types = (str, None)
OPT_OBJ: Types = (dict, None)

#: Fields of every record, in the order KumoMTA writes them.
REQUIRED: dict[str, Types] = {
    "type": STR,
    "id": STR,
    "sender": STR,
    "recipient": (str, list),  # a list for a multi-recipient batch (since 2025.12.02)
    "queue": STR,
    "site": STR,
    "size": INT,
    "response": OBJ,
    "peer_address": OPT_OBJ,
    "timestamp": INT,  # epoch seconds
    "event_time": STR,  # the same instant, RFC 3339 (since 2025.10.06)
    "created": INT,
    "created_time": STR,  # since 2025.10.06
    "num_attempts": INT,
    "bounce_classification": STR,
    "egress_pool": OPT_STR,
    "egress_source": OPT_STR,
    "source_address": OPT_OBJ,  # since 2024.09.02
    "feedback_report": OPT_OBJ,
    "meta": OBJ,
    "headers": OBJ,
    "delivery_protocol": OPT_STR,
    "reception_protocol": OPT_STR,
    "nodeid": STR,  # a UUID
}
OMITTED_WHEN_UNSET: dict[str, Types] = {
    "tls_cipher": STR,
    "tls_protocol_version": STR,
    "tls_peer_subject_name": LIST,
    "provider_name": STR,
    "session_id": STR,  # a UUID (since 2025.01.23)
}
#: Fields older KumoMTA versions do not write (a reader must not require them).
ADDED_LATER = frozenset({"event_time", "created_time", "source_address"})

RESPONSE: dict[str, Types] = {
    "code": INT,
    "enhanced_code": OPT_OBJ,
    "content": STR,  # one line: KumoMTA joins a multi-line reply with spaces
    "command": OPT_STR,
}
ENHANCED_CODE: dict[str, Types] = {"class": INT, "subject": INT, "detail": INT}
PEER_ADDRESS: dict[str, Types] = {"name": STR, "addr": STR}
PEER_ADDRESS_OPTIONAL: dict[str, Types] = {"is_secure": (bool,)}  # written only when true
SOURCE_ADDRESS: dict[str, Types] = {"address": STR}
SOURCE_ADDRESS_OPTIONAL: dict[str, Types] = {"server": STR, "protocol": STR}  # with a proxy

#: ``feedback_report`` (RFC 5965 fields as ``ARFReport`` serialises them).
FEEDBACK_REPORT: dict[str, Types] = {
    "feedback_type": STR,
    "user_agent": STR,
    "version": STR,
    "arrival_date": OPT_STR,  # RFC 3339
    "incidents": (int, None),
    "original_envelope_id": OPT_STR,
    "original_mail_from": OPT_STR,
    "reporting_mta": OPT_OBJ,
    "source_ip": OPT_STR,
    "authentication_results": LIST,
    "original_rcpto_to": LIST,
    "reported_domain": LIST,
    "reported_uri": LIST,
    "extensions": OBJ,  # unknown report fields: name -> list of values
    "original_message": (str, list, None),  # a list of byte values when not UTF-8
    "supplemental_trace": (dict, None),
}
REPORTING_MTA: dict[str, Types] = {"mta_type": STR, "name": STR}
#: RFC 5965 Feedback-Type values (section 7.3 registry).
FEEDBACK_TYPES = frozenset({"abuse", "fraud", "virus", "other", "not-spam"})

_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6}|\.\d{9})?Z$")


def _is(value: Any, types: Types) -> bool:
    for t in types:
        if t is None and value is None:
            return True
        if t is int and type(value) is int:  # a JSON integer, not a bool
            return True
        if t is not None and t is not int and isinstance(value, t):
            return True
    return False


def _check_object(
    where: str,
    obj: Mapping[str, Any],
    required: Mapping[str, Types],
    optional: Mapping[str, Types] | None = None,
) -> list[str]:
    optional = optional or {}
    problems = [f"{where}: missing {k}" for k in required if k not in obj]
    for key, value in obj.items():
        types = required.get(key) or optional.get(key)
        if types is None:
            problems.append(f"{where}: unknown field {key}")
        elif key in optional and value is None:
            problems.append(f"{where}: {key} is null (KumoMTA omits it instead)")
        elif not _is(value, types):
            problems.append(f"{where}: {key}={value!r} is not {types}")
    return problems


def rfc3339_ok(value: str) -> bool:
    """KumoMTA's RFC 3339 form: UTC, ``Z``, 0/3/6/9 fractional digits."""
    if not _RFC3339.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _uuid_ok(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def record_problems(record: Mapping[str, Any]) -> list[str]:
    """Everything in ``record`` that KumoMTA would not write; empty when it conforms."""
    where = f"{record.get('type')} {record.get('id')}"
    problems = _check_object(where, record, REQUIRED, OMITTED_WHEN_UNSET)
    if problems:
        return problems
    if record["type"] not in RECORD_TYPES:
        problems.append(f"{where}: unknown type")
    recipient = record["recipient"]
    if isinstance(recipient, list) and not all(isinstance(r, str) for r in recipient):
        problems.append(f"{where}: recipient list holds a non-string")
    if record["size"] < 0 or not 0 <= record["num_attempts"] <= 65535:
        problems.append(f"{where}: negative size or num_attempts out of u16")
    for key in ("event_time", "created_time"):
        if not rfc3339_ok(record[key]):
            problems.append(f"{where}: {key}={record[key]!r} is not RFC 3339")
    for key in ("nodeid", "session_id"):
        if key in record and not _uuid_ok(record[key]):
            problems.append(f"{where}: {key} is not a UUID")
    resp = record["response"]
    problems += _check_object(f"{where} response", resp, RESPONSE)
    if isinstance(resp.get("content"), str) and (
        "\r" in resp["content"] or "\n" in resp["content"]
    ):
        problems.append(f"{where}: response.content has a line break")
    if isinstance(resp.get("enhanced_code"), dict):
        problems += _check_object(f"{where} enhanced_code", resp["enhanced_code"], ENHANCED_CODE)
    if record["peer_address"] is not None:
        problems += _check_object(
            f"{where} peer_address", record["peer_address"], PEER_ADDRESS, PEER_ADDRESS_OPTIONAL
        )
    if record["source_address"] is not None:
        problems += _check_object(
            f"{where} source_address",
            record["source_address"],
            SOURCE_ADDRESS,
            SOURCE_ADDRESS_OPTIONAL,
        )
    if "tls_peer_subject_name" in record and not all(
        isinstance(s, str) for s in record["tls_peer_subject_name"]
    ):
        problems.append(f"{where}: tls_peer_subject_name holds a non-string")
    report = record["feedback_report"]
    if (report is not None) != (record["type"] == "Feedback"):
        problems.append(f"{where}: feedback_report is set exactly on Feedback records")
    if report is not None:
        problems += _check_object(f"{where} feedback_report", report, FEEDBACK_REPORT)
        if isinstance(report.get("reporting_mta"), dict):
            problems += _check_object(
                f"{where} reporting_mta", report["reporting_mta"], REPORTING_MTA
            )
        for key in (
            "authentication_results",
            "original_rcpto_to",
            "reported_domain",
            "reported_uri",
        ):
            if not all(isinstance(v, str) for v in report.get(key) or []):
                problems.append(f"{where}: feedback_report.{key} holds a non-string")
        arrival = report.get("arrival_date")
        if isinstance(arrival, str) and not rfc3339_ok(arrival):
            problems.append(f"{where}: feedback_report.arrival_date is not RFC 3339")
    return problems
