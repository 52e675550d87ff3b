"""KumoMTA log records: decoding, the response line, and enrichment with a classification."""

from __future__ import annotations

import re
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

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class MalformedRecord(ValueError):
    """A record that cannot be processed; ``reason`` is one of :data:`MALFORMED_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


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
    if rtype in CLASSIFIABLE_TYPES and not response_is_valid(record.get("response")):
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


def set_classification(
    record: dict[str, Any], label: str, classification: dict[str, Any]
) -> dict[str, Any]:
    """Make ``record`` an enriched record (in place): the one place that builds one."""
    record["bounce_classification"] = label
    record["classification"] = classification
    return record


def enrich(record: dict[str, Any], classifier: Classifier | ReloadableClassifier) -> dict[str, Any]:
    """Add ``bounce_classification`` and ``classification`` to classifiable records (in place).

    Other record types are returned unchanged; every other field is left untouched. A Feedback
    record with a usable ARF report is labelled from it (``streamer.feedback``).
    """
    rtype = record.get("type")
    if rtype not in CLASSIFIABLE_TYPES:
        return record
    current = getattr(classifier, "current", classifier)  # a ReloadableClassifier's snapshot
    label = feedback_label(record) if rtype == "Feedback" else None
    if label is not None:  # an ARF report says what it is (see streamer.feedback)
        result = Classification(label, None, FEEDBACK_REPORT)
    else:
        result = current.classify(response_line(record["response"]))
    return enrich_with(record, result, current.version)


def enrich_with(record: dict[str, Any], result: Classification, version: str) -> dict[str, Any]:
    """``enrich`` with a classification already made (in place)."""
    return set_classification(record, result.label, classification_object(result, version))
