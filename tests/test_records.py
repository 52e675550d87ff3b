"""Records: the response line, enrichment (round-trip safe), and decode reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.classifier import Classifier, ReloadableClassifier
from streamer.records import (
    CLASSIFIABLE_TYPES,
    MALFORMED_REASONS,
    MalformedRecord,
    decode_record,
    enrich,
    response_line,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.from_files([FIXTURES / "basic.toml", FIXTURES / "second.json"])


@pytest.mark.parametrize(
    ("response", "line"),
    [
        (
            {
                "code": 550,
                "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
                "content": "user unknown",
                "command": "RCPT TO:<a@b>\r\n",
            },
            "550 5.1.1 user unknown",
        ),
        ({"code": 421, "enhanced_code": None, "content": "a\r\nb\rc\nd"}, "421 a b c d"),
        ({"code": 550, "content": "two\n\nbreaks"}, "550 two  breaks"),
        ({"code": 250, "enhanced_code": None, "content": ""}, "250 "),
    ],
)
def test_response_line(response: dict[str, Any], line: str) -> None:
    assert response_line(response) == line


def bounce(**extra: Any) -> dict[str, Any]:
    rec = {
        "type": "Bounce",
        "id": "abc",
        "response": {
            "code": 550,
            "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
            "content": "no such user",
            "command": "RCPT TO:<x@example.com>",
        },
        "nested": {"unknown": [1, 2.5, None, True, "ü"], "big": 2**60},
    }
    rec.update(extra)
    return rec


def test_enrich_classifiable(classifier: Classifier) -> None:
    rec = enrich(bounce(), classifier)
    assert rec["bounce_classification"] == "InvalidRecipient"
    assert rec["classification"] == {
        "label": "InvalidRecipient",
        "rule": {
            "file": str(FIXTURES / "basic.toml"),
            "label": "InvalidRecipient",
            "index": 0,
            "pattern": r"^(?:5\d\d) 5\.1\.1 ",
        },
        "rules_version": classifier.version,
        "evidence": "enhanced-code",
    }


def test_enrich_uncategorized_has_null_rule(classifier: Classifier) -> None:
    rec = bounce()
    rec["response"] = {"code": 554, "enhanced_code": None, "content": "who knows"}
    rec = enrich(rec, classifier)
    assert rec["bounce_classification"] == "Uncategorized"
    assert rec["classification"]["rule"] is None


@pytest.mark.parametrize("rtype", sorted(CLASSIFIABLE_TYPES))
def test_every_classifiable_type(rtype: str, classifier: Classifier) -> None:
    assert "classification" in enrich(bounce(type=rtype), classifier)


@pytest.mark.parametrize("rtype", ["Delivery", "Reception", "Delayed", "Any"])
def test_other_types_pass_unchanged(rtype: str, classifier: Classifier) -> None:
    raw = orjson.dumps(bounce(type=rtype))
    assert orjson.dumps(enrich(decode_record(raw), classifier)) == raw


def test_round_trip_keeps_unknown_fields(classifier: Classifier) -> None:
    original = bounce(extra_field={"deep": {"x": [1, {"y": "z"}]}}, meta={})
    raw = orjson.dumps(original)
    out = orjson.loads(orjson.dumps(enrich(decode_record(raw), classifier)))
    added = {"bounce_classification", "classification"}
    assert {k: v for k, v in out.items() if k not in added} == original
    assert list(out)[: len(original)] == list(original)  # field order kept too


def test_enrich_with_reloadable(tmp_path: Path) -> None:
    f = tmp_path / "r.toml"
    f.write_text("[rules]\nX = ['such user']\n")
    rc = ReloadableClassifier([f])
    rec = enrich(bounce(), rc)
    assert rec["bounce_classification"] == "X"
    assert rec["classification"]["rules_version"] == rc.version


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"x" * 101, "too-large"),
        (b'{"type": "Bounce\xff"}', "not-utf8"),
        (b"{not json", "not-json"),
        (b"[1, 2]", "not-object"),
        (b'{"id": 1}', "missing-type"),
        (b'{"type": 5}', "bad-type"),
        (b'{"type": "Bounce"}', "missing-response"),
        (b'{"type": "Bounce", "response": null}', "missing-response"),
        (b'{"type": "Bounce", "response": "550"}', "bad-response"),
        (b'{"type": "Bounce", "response": {"code": "550", "content": ""}}', "bad-response"),
        (b'{"type": "Bounce", "response": {"code": 550, "content": 1}}', "bad-response"),
        (
            b'{"type": "Bounce", "response": {"code": 550, "content": "",'
            b' "enhanced_code": {"class": 5}}}',
            "bad-response",
        ),
    ],
)
def test_decode_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedRecord) as info:
        decode_record(raw, max_bytes=100)
    assert info.value.reason == reason
    assert reason in MALFORMED_REASONS


def test_decode_accepts_other_types_without_response() -> None:
    assert decode_record(b'{"type": "Delivery"}') == {"type": "Delivery"}
