"""What a classification rests on: the response's wording, its enhanced status code, or only
its basic reply code.

KumoMTA's classifier returns a label and nothing else; streamer keeps that label (parity) and
adds the evidence behind it, because the same label can be strong or weak: ``550 5.1.1 user
unknown`` and ``550 weird thing foo 123`` both come out ``InvalidRecipient`` with the shipped
rules, the second only through RFC 5321's reply-code fallback (550 = "mailbox unavailable"),
while receivers send 550 for blocks and policy as often as for a bad address. Suppressing an
address on such a line would suppress good recipients, and a line that only a reply-code
fallback matched is a rule gap: nobody has written a rule for what it says.

The evidence is found by asking the winning rule about the line with its text taken away: a
rule that still matches the bare reply code (``"550"``) rests on the reply code alone; one that
matches the reply code with the enhanced code (``"550 5.1.1 "``) rests on the enhanced code;
any other rests on the wording. This holds for any rules file, not only the shipped ones, and
costs two single-pattern matches per distinct line (results are cached with the line).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: The rule matched what the response says (its text).
WORDING = "wording"
#: The rule matched the enhanced status code (RFC 3463 ``X.S.D``), not the text.
ENHANCED_CODE = "enhanced-code"
#: Only the basic reply code (RFC 5321 ``550``) matched: the weakest evidence, and a rule gap.
REPLY_CODE = "reply-code"
#: A Feedback record labelled from its ARF report (``feedback_type``), not from a response line.
FEEDBACK_REPORT = "feedback-report"

#: Every evidence a classification can carry (Uncategorized carries none).
EVIDENCE = (WORDING, ENHANCED_CODE, REPLY_CODE, FEEDBACK_REPORT)
#: The evidence a hard classification may suppress an address on, by default.
DEFAULT_SUPPRESS_EVIDENCE = (WORDING, ENHANCED_CODE)


def may_suppress(evidence: str | None, allowed: frozenset[str]) -> bool:
    """Whether a hard classification resting on ``evidence`` may suppress its address: only on
    evidence the operator allows (``suppress_evidence``); a classification without evidence (a
    Feedback or an explicitly labelled record) is never held back by it."""
    return evidence is None or evidence in allowed


# The head of a response line as ``records.response_line`` builds it: "550 " then "5.1.1 ".
_HEAD = re.compile(r"([0-9]{3})(?: ([245]\.[0-9]{1,3}\.[0-9]{1,3}) )?")


def head(line: str) -> str:
    """The part of ``line`` that evidence depends on besides the rule: its reply code and
    enhanced code (``"550 5.1.1 "``), or "" (evidence is then the wording)."""
    found = _HEAD.match(line)
    return "" if found is None else found.group(0)


class EvidenceMemo:
    """:func:`evidence_of` remembered per (rule, :func:`head` of the line): the evidence of a
    rule's match depends on nothing else, and heads repeat (a few hundred codes), so a cache
    miss of the classifier pays a dictionary lookup instead of two or three regex searches."""

    def __init__(self, matches: Callable[[int, str], bool], capacity: int = 4096) -> None:
        self._matches = matches
        self._capacity = capacity
        self._memo: dict[tuple[int, str], str] = {}

    def __call__(self, rule_index: int, line: str) -> str:
        key = (rule_index, head(line))
        found = self._memo.get(key)
        if found is None:
            found = evidence_of(line, lambda text: self._matches(rule_index, text))
            if len(self._memo) >= self._capacity:
                self._memo.clear()  # bounded; refilled from the heads that still come
            self._memo[key] = found
        return found


def evidence_of(line: str, matches: Callable[[str], bool]) -> str:
    """The evidence of a classification: ``matches(text)`` says whether the winning rule
    matches ``text`` (the rule already matched ``line``)."""
    head = _HEAD.match(line)
    if head is None:
        return WORDING
    code, enhanced = head.group(1), head.group(2)
    if matches(code) or matches(code + " "):
        return REPLY_CODE
    if enhanced is not None and matches(f"{code} {enhanced} "):
        return ENHANCED_CODE
    return WORDING
