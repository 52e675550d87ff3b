"""KumoMTA log records: decoding, the response line, and enrichment with a classification."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from streamer.classifier import Classification
from streamer.evidence import FEEDBACK_REPORT
from streamer.feedback import feedback_label

if TYPE_CHECKING:
    from streamer.classifier import Classifier, ReloadableClassifier

#: The record types KumoMTA logs (``RecordType`` in ``kumo-log-types``, less ``Any``, which
#: only matches types in its logging configuration), in its order.
RECORD_TYPES: tuple[str, ...] = (
    "Reception",
    "Delivery",
    "Bounce",
    "TransientFailure",
    "Expiration",
    "AdminBounce",
    "OOB",
    "Feedback",
    "Rejection",
    "AdminRebind",
    "DeferredInjectionRebind",
    "Delayed",
    "XferOut",
    "XferIn",
)
#: The types KumoMTA's bounce classifier looks at; every other type passes through.
CLASSIFIABLE_TYPES = frozenset(
    {"Bounce", "TransientFailure", "Expiration", "AdminBounce", "OOB", "Feedback", "Rejection"}
)

#: ``reception_protocol`` of the messages a KumoMTA log hook makes of its own log records (its
#: ``should_enqueue_log_record`` docs; ``policy-extras/log_hooks.lua`` and the hook's own loop
#: guard test exactly this value). Their delivery attempts are logged like any message's: in the
#: *local* log files, each shipped record adds a ``Delivery`` (or ``TransientFailure``/``Bounce``
#: when shipping failed) of the hook's queue (``<hook name>.log_hook`` with ``log_hooks.lua``,
#: any name with a hand-written hook) carrying the *original* record's sender and recipient.
LOG_RECORD_PROTOCOL = "LogRecord"
#: The type streamer counts and routes such a bookkeeping record as: not a KumoMTA type, so
#: never classified, never a delivery or an outcome, never a suppression or its lifting.
LOG_HOOK_TYPE = "log_hook"

#: Stable reason codes of :class:`MalformedRecord` (used as the dead-letter reason).
MALFORMED_REASONS = (
    "too-large",
    "not-utf8",
    "not-json",
    "not-object",
    "missing-type",
    "bad-type",
    "missing-response",
    "bad-response",
)

#: Dead-letter reason of a message without a value (a tombstone): there is no record to route.
EMPTY = "empty"
#: Dead-letter reason when enrichment itself failed (a bug, never the record's fault alone): the
#: record is kept rather than lost, and the worker carries on.
PROCESSING_ERROR = "processing-error"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class MalformedRecord(ValueError):
    """A record that cannot be processed; ``reason`` is one of :data:`MALFORMED_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def is_log_hook_record(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is KumoMTA's record of delivering a log hook's message (see
    :data:`LOG_RECORD_PROTOCOL`), whatever its type: bookkeeping, not mail."""
    return record.get("reception_protocol") == LOG_RECORD_PROTOCOL


def effective_type(record: Mapping[str, Any]) -> Any:
    """The type streamer handles ``record`` as: :data:`LOG_HOOK_TYPE` for a log hook's
    bookkeeping record, else its ``type``. Every consumer of records asks this, not ``type``."""
    if record.get("reception_protocol") == LOG_RECORD_PROTOCOL:
        return LOG_HOOK_TYPE
    return record.get("type")


#: ``RCPT TO:<path>`` as a client sends it (any case, optional spaces, ESMTP parameters after,
#: the brackets perhaps missing or unclosed: KumoMTA logs refused syntax errors too).
_RCPT_COMMAND = re.compile(r"\s*RCPT\s+TO\s*:\s*(?:<([^>]*)>?|([^\s<>]*))", re.IGNORECASE)


def rejected_recipient(record: Mapping[str, Any]) -> str | None:
    """The address a ``Rejection`` of an SMTP ``RCPT TO`` refused, from ``response.command``
    (the client's line, kept as sent); ``""`` when the command names none (never the record's
    ``recipient``: that is someone else); None for any other record.

    KumoMTA fills such a record's ``recipient`` with the transaction's last *accepted*
    recipient (``""`` before any), so the refused address is only in the command.
    """
    if record.get("type") != "Rejection":
        return None
    response = record.get("response")
    command = response.get("command") if type(response) is dict else None
    if type(command) is not str:
        return None
    m = _RCPT_COMMAND.match(command)
    if m is None:
        return None
    path = m[1] if m[1] is not None else m[2]
    if path.startswith("@") and ":" in path:  # a source route (RFC 5321 4.1.2): ignored
        path = path.partition(":")[2]
    return path.strip()


def recipients(record: Mapping[str, Any]) -> list[str]:
    """The recipients a record's outcome concerns: the refused address of a ``Rejection`` of
    ``RCPT TO`` (:func:`rejected_recipient`), nobody for a log hook's bookkeeping record,
    else ``recipient`` (a string, or a list for a multi-recipient transaction). Provider,
    suppressions and reports take the recipient from here; the record itself is never changed.
    """
    if record.get("reception_protocol") == LOG_RECORD_PROTOCOL:
        return []
    refused = rejected_recipient(record)
    if refused is not None:
        return [refused] if refused else []
    r = record.get("recipient")
    if type(r) is list:
        return [x for x in r if type(x) is str]
    return [r] if type(r) is str else []


def first_recipient(record: Mapping[str, Any]) -> str | None:
    """The first of :func:`recipients` (a multi-recipient transaction's share one destination
    domain: KumoMTA batches per queue), or None."""
    found = recipients(record)
    return found[0] if found else None


def response_line(response: dict[str, Any]) -> str:
    """KumoMTA's single-line form of a response: ``"<code> [c.s.d ]content"``."""
    parts = [f"{response.get('code')} "]
    enh = response.get("enhanced_code")
    if enh:
        parts.append(f"{enh.get('class')}.{enh.get('subject')}.{enh.get('detail')} ")
    content = response.get("content") or ""
    parts.append(_LINE_BREAK.sub(" ", content) if ("\r" in content or "\n" in content) else content)
    return "".join(parts)


def response_is_valid(response: Any) -> bool:
    """Whether a classifiable record's ``response`` can be classified (the one acceptance test).

    ``type(v) is int`` rules out ``bool``; JSON decoders produce exact ``dict``/``int``/``str``
    objects, so exact-type tests are both correct and the cheapest checks on the hot path.
    """
    if type(response) is not dict:
        return False
    if type(response.get("code")) is not int or type(response.get("content", "")) is not str:
        return False
    enh = response.get("enhanced_code")
    return enh is None or (
        type(enh) is dict
        and type(enh.get("class")) is int
        and type(enh.get("subject")) is int
        and type(enh.get("detail")) is int
    )


def accept(raw: bytes | None, max_bytes: int | None = None) -> dict[str, Any] | None:
    """The decoded record when it can be processed, else None (``decode_record`` says why).

    The hot path: one orjson parse and exact-type checks. Records of classifiable types must
    carry a well-formed ``response``; other types only need to be objects with a string ``type``.
    """
    if raw is None or (max_bytes is not None and len(raw) > max_bytes):
        return None
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(record) is not dict:
        return None
    rtype = record.get("type")
    if type(rtype) is not str:
        return None
    if (
        rtype in CLASSIFIABLE_TYPES
        and not response_is_valid(record.get("response"))
        and record.get("reception_protocol") != LOG_RECORD_PROTOCOL  # not classified: no check
    ):
        return None
    return record


def _response_problem(response: Any) -> str:
    """Why ``response_is_valid`` refused a response (only called once it has)."""
    if not isinstance(response, dict):
        return "response is not an object"
    code = response.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return "response.code is not an integer"
    if not isinstance(response.get("content", ""), str):
        return "response.content is not a string"
    return "response.enhanced_code is malformed"


def decode_record(raw: bytes, max_bytes: int | None = None) -> dict[str, Any]:
    """Decode one JSON log record; raises :class:`MalformedRecord` with a stable reason.

    Accepts exactly what :func:`accept` accepts; the slower checks below only name the reason.
    A log hook's bookkeeping record is never classified, so its response is not checked.
    """
    record = accept(raw, max_bytes)
    if record is not None:
        return record
    if max_bytes is not None and len(raw) > max_bytes:
        raise MalformedRecord("too-large", f"{len(raw)} bytes > {max_bytes}")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedRecord("not-utf8", str(exc)) from None
        raise MalformedRecord("not-json", str(exc)) from None
    if not isinstance(parsed, dict):
        raise MalformedRecord("not-object", type(parsed).__name__)
    if "type" not in parsed:
        raise MalformedRecord("missing-type")
    rtype = parsed["type"]
    if not isinstance(rtype, str):
        raise MalformedRecord("bad-type", "type is not a string")
    if parsed.get("response") is None:
        raise MalformedRecord("missing-response", f"{rtype} record without a response")
    raise MalformedRecord("bad-response", _response_problem(parsed["response"]))


def refusal_reason(raw: bytes | None, max_bytes: int) -> tuple[str, str | None]:
    """Why ``accept`` refused ``raw``: the reason and its detail, as ``decode_record`` names
    them (decoded again, slowly: refusals are rare)."""
    if raw is None:
        return EMPTY, None
    try:
        decode_record(raw, max_bytes)
    except MalformedRecord as exc:
        return exc.reason, exc.detail or None
    return PROCESSING_ERROR, "accepted by decode_record but not by accept"  # cannot happen


def feedback_classification(record: Mapping[str, Any]) -> Classification | None:
    """A Feedback record's classification by its ARF report (``streamer.feedback``): the report
    says what it is, so no response line is read. None for a record without a usable one."""
    label = feedback_label(record) if record["type"] == "Feedback" else None
    return None if label is None else Classification(label, None, FEEDBACK_REPORT)


def classification_object(result: Classification, version: str) -> dict[str, Any]:
    """The ``classification`` field of an enriched record."""
    rule = result.rule
    return {
        "label": result.label,
        "rule": None
        if rule is None
        else {"file": rule.file, "label": rule.label, "index": rule.index, "pattern": rule.pattern},
        "rules_version": version,
        "evidence": result.evidence,
    }


def with_analytics(
    classification: Mapping[str, Any], category: str | None, provider: str
) -> dict[str, Any]:
    """The ``classification`` object with analytics on: plus the record's ``category`` and
    ``provider``, in this order (the worker's and ``streamer classify``'s alike)."""
    return {**classification, "category": category, "provider": provider}


def set_classification(
    record: dict[str, Any], label: str, classification: dict[str, Any]
) -> dict[str, Any]:
    """Make ``record`` an enriched record (in place): the one place that builds one."""
    record["bounce_classification"] = label
    record["classification"] = classification
    return record


def enrich(record: dict[str, Any], classifier: Classifier | ReloadableClassifier) -> dict[str, Any]:
    """Add ``bounce_classification`` and ``classification`` to classifiable records (in place).

    Other record types (and a log hook's bookkeeping records) are returned unchanged; every
    other field is left untouched. A Feedback record with a usable ARF report is labelled from
    it (``streamer.feedback``).
    """
    rtype = effective_type(record)
    if rtype not in CLASSIFIABLE_TYPES:
        return record
    current = getattr(classifier, "current", classifier)  # a ReloadableClassifier's snapshot
    result = feedback_classification(record)
    if result is None:
        result = current.classify(response_line(record["response"]))
    return enrich_with(record, result, current.version)


def enrich_with(record: dict[str, Any], result: Classification, version: str) -> dict[str, Any]:
    """``enrich`` with a classification already made (in place)."""
    return set_classification(record, result.label, classification_object(result, version))
