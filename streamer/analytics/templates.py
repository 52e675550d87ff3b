"""Response-line templates: mask what varies per message so that equal causes collapse.

``550 5.1.1 <bob@example.com>: user unknown (queue id 3F2A9C11D)`` and the same text for another
address and queue id give one template, ``550 5.1.1 <{email}>: user unknown (queue id {id})``.
The leading reply code and enhanced status code (and enhanced codes later in the text) are kept:
they say what kind of failure it is. Everything is precompiled; masks run from the most to the
least specific (a URL contains hosts and numbers, an address contains a host, ...).
"""

from __future__ import annotations

import re

#: Placeholders a template may contain (``gaps`` turns each into a regex fragment).
PLACEHOLDERS: tuple[str, ...] = ("url", "email", "id", "time", "ip", "host", "n")

#: Only this much of a line is templated: bounds the cost per line and the size of a template.
MAX_LINE = 500

_HEAD = re.compile(r"^\s*[2-5][0-9]{2}(?:[ -][2-5]\.[0-9]{1,3}\.[0-9]{1,3})?(?=\s|$)")

_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(?:https?|ftp)://[^\s<>\"'()\[\]]+"), "{url}"),
    (
        re.compile(
            r"[A-Za-z0-9.!#$%&'*+/=?^_`~-]+@"
            r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
        ),
        "{email}",
    ),
    (
        re.compile(r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"),
        "{id}",
    ),
    (
        re.compile(
            r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
            r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?(?![\w:])"
            r"|\b[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?![\w:])"
        ),
        "{time}",
    ),
    # IPv6 (also IPv4-mapped): at least two colons and a hex digit, not inside a word.
    (
        re.compile(
            r"(?i)(?<![\w.])(?=[0-9a-f:]*[0-9a-f])(?=[0-9a-f]*:[0-9a-f]*:)"
            r"(?:[0-9a-f]{0,4}:){2,7}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9a-f]{1,4})?(?![\w:])"
        ),
        "{ip}",
    ),
    (re.compile(r"(?<![\w.])[0-9]{1,3}(?:\.[0-9]{1,3}){3}(?![\w]|\.[0-9])"), "{ip}"),
    (
        re.compile(
            r"(?i)\b(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+"
            r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})\b(?!\.[a-z0-9])"
        ),
        "{host}",
    ),
    # hex ids (queue ids, message ids) of 8+ digits with letters and digits mixed
    (re.compile(r"(?i)\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{8,}\b"), "{id}"),
    # other machine-made tokens: 10+ characters mixing letters and digits (short codes such as
    # TSS04 or S3150 stay: they name the cause)
    (re.compile(r"\b(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{10,}\b"), "{id}"),
)

# Reply + enhanced codes inside the text are kept (group 1); other numbers are masked.
_NUMBERS = re.compile(
    r"\b([2-5][0-9]{2}[ -][2-5]\.[0-9]{1,3}\.[0-9]{1,3}\b"
    r"|[2-5]\.[0-9]{1,3}\.[0-9]{1,3}\b(?!\.[0-9]))"
    r"|\b[0-9]+\b"
)


def _number(m: re.Match[str]) -> str:
    return m.group(1) or "{n}"


def template(line: str) -> str:
    """The template of a response line (deterministic; placeholders are ``{name}``)."""
    line = line[:MAX_LINE]
    head = _HEAD.match(line)
    if head is None:
        prefix, rest = "", line
    else:
        prefix, rest = head.group(0), line[head.end() :]
    for pattern, repl in _MASKS:
        rest = pattern.sub(repl, rest)
    return prefix + _NUMBERS.sub(_number, rest)
