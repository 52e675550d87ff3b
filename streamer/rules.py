"""Rule files in KumoMTA's ``configure_bounce_classifier`` format, merged exactly as KumoMTA does.

A file holds a ``rules`` table mapping a label to a list of Rust-syntax regexes. Files are read
in the order given, labels in file order, patterns in list order, and every pattern gets the
next index; the lowest matching index wins. Loading is all-or-nothing: any error in any file
raises :class:`RulesError` (listing every problem found) and nothing is returned.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import json5

from streamer.resources import display_rule_file
from streamer.rust_regex import RustRegexError, Translation, translate

PREDEFINED_LABELS: tuple[str, ...] = (
    "InvalidRecipient",
    "DNSFailure",
    "SpamBlock",
    "SpamContent",
    "ProhibitedAttachment",
    "RelayDenied",
    "AutoReply",
    "TransientFailure",
    "Subscribe",
    "Unsubscribe",
    "ChallengeResponse",
    "BadConfiguration",
    "BadConnection",
    "BadDomain",
    "ContentRelated",
    "InactiveMailbox",
    "InvalidSender",
    "MessageExpired",
    "NoAnswerFromHost",
    "PolicyRelated",
    "ProtocolErrors",
    "QuotaIssues",
    "RelayingIssues",
    "RoutingErrors",
    "SpamRelated",
    "VirusRelated",
    "AuthenticationFailed",
    "TooManyRecipients",
    "Uncategorized",
)
UNCATEGORIZED = "Uncategorized"
SUPPORTED_EXTENSIONS = (".toml", ".json", ".json5")


class RulesError(Exception):
    """A rule set could not be loaded. ``errors`` holds one message per problem."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Rule:
    index: int
    label: str
    pattern: str
    file: str


@dataclass
class RuleSet:
    rules: list[Rule]
    labels: list[str]
    files: list[str]
    version: str
    #: RE2 forms of ``rules`` (same order); built while loading so errors surface at load time.
    translations: list[Translation] = field(default_factory=list, repr=False)
    #: Position of each rule within its label's list in its file (for error messages).
    positions: list[int] = field(default_factory=list, repr=False)
    #: What loading noticed without failing (a label twice in a JSON file: the last list wins,
    #: as in KumoMTA); ``label_warnings`` reports them.
    notes: list[str] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.rules)

    def describe(self, index: int) -> str:
        """``file:line: label 'X' pattern #N 'text'``, the prefix of every per-pattern error."""
        r = self.rules[index]
        pos = self.positions[index] if index < len(self.positions) else -1
        real = next((f for f in self.files if display_rule_file(f) == r.file), r.file)
        return _where(real, r.label, pos, r.pattern, shown=r.file)


def _syntax_error(path: str, kind: str, exc: Exception) -> str:
    msg = str(exc)
    line: int | None = getattr(exc, "lineno", None)
    if line is None:
        m = re.search(r"at line (\d+)", msg) or re.search(r"^<string>:(\d+)", msg)
        if m:
            line = int(m.group(1))
    if isinstance(exc, json.JSONDecodeError):
        msg = exc.msg + f" (column {exc.colno})"
    elif msg.startswith("<string>:"):
        msg = msg.split(" ", 1)[1] if " " in msg else msg
    where = f"{path}:{line}" if line is not None else path
    return f"{where}: invalid {kind}: {msg}"


def _pairs_noting_duplicates(
    path: str, notes: list[str]
) -> Callable[[Iterable[tuple[str, Any]]], Any]:
    """A JSON ``object_pairs_hook``: a dict as usual (the last value of a repeated key wins, as
    in KumoMTA), noting every repeated key."""

    def hook(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
        pairs = list(items)
        out = dict(pairs)
        if len(out) < len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    line = _key_line(path, str(key), nth=2)
                    where = f"{path}:{line}" if line else path
                    notes.append(
                        f"{where}: {key!r} appears more than once in the same object; only its "
                        "last value counts (as in KumoMTA)"
                    )
                seen.add(key)
        return out

    return hook


def _key_line(path: str, key: str, nth: int = 1) -> int | None:
    """The line of the ``nth`` occurrence of ``key`` as a table key or object member."""
    text = _text(path)
    if text is None:
        return None
    keys = re.finditer(r"""(?<![\w"'-])["']?""" + re.escape(key) + r"""["']?\s*[=:]""", text)
    for i, m in enumerate(keys, 1):
        if i == nth:
            return text.count("\n", 0, m.start()) + 1
    return None


def _pattern_line(path: str, label: str, pattern: object) -> int | None:
    """The line where ``pattern`` is written under ``label`` (error messages only: the file is
    read again); the label's line when the pattern's text cannot be found."""
    text = _text(path)
    if text is None:
        return None
    key = _key_line(path, label)
    if isinstance(pattern, str) and pattern:
        start = 0
        if key is not None:  # search from the label's line on
            start = sum(len(line) for line in text.splitlines(keepends=True)[: key - 1])
        written = {pattern, json.dumps(pattern, ensure_ascii=False)[1:-1]}
        found = [i for form in written if (i := text.find(form, start)) >= 0]
        if found:
            return text.count("\n", 0, min(found)) + 1
    return key


def _text(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _parse_file(path: str, data: bytes, notes: list[str] | None = None) -> Any:
    suffix = Path(path).suffix.lower()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError([f"{path}: not valid UTF-8 (byte {exc.start})"]) from None
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        hook = _pairs_noting_duplicates(path, notes if notes is not None else [])
        if suffix == ".json":
            return json.loads(text, object_pairs_hook=hook)
        return json5.loads(text, object_pairs_hook=hook)
    except ValueError as exc:
        kind = {".toml": "TOML", ".json": "JSON", ".json5": "JSON5"}[suffix]
        raise RulesError([_syntax_error(path, kind, exc)]) from None


def _where(path: str, label: str, pos: int, pattern: object, shown: str | None = None) -> str:
    """``file:line: label 'X' pattern #N 'text'``: N counts from 1, the text as written;
    ``shown``: how to name the file (``rules/<name>`` for a shipped one)."""
    line = _pattern_line(path, label, pattern)
    name = shown or path
    where = f"{name}:{line}" if line else name
    text = "'" + pattern.replace("\n", "\\n") + "'" if isinstance(pattern, str) else repr(pattern)
    return f"{where}: label {label!r} pattern #{pos + 1} {text}"


def _read_table(
    path: str, digest: Any, errors: list[str], notes: list[str]
) -> dict[Any, Any] | None:
    """A rules file's ``rules`` table (the file's bytes go into ``digest``); None on errors."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUPPORTED_EXTENSIONS:
        errors.append(
            f"{path}: unsupported rules file extension {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
        )
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        errors.append(f"{path}: cannot read: {exc.strerror or exc}")
        return None
    digest.update(data)
    try:
        doc = _parse_file(path, data, notes)
    except RulesError as exc:
        errors.extend(exc.errors)
        return None
    if not isinstance(doc, dict) or "rules" not in doc:
        errors.append(f"{path}: missing the 'rules' table (label = [patterns...])")
        return None
    table = doc["rules"]
    if not isinstance(table, dict):
        errors.append(f"{path}: 'rules' must be a table mapping labels to lists of patterns")
        return None
    return table


def load_rules(files: Iterable[str | PathLike[str]]) -> RuleSet:
    """Load, merge and validate rule files; raises :class:`RulesError` on any problem."""
    paths = [str(f) for f in files]
    if not paths:
        raise RulesError(["no rule files given"])
    errors: list[str] = []
    rules: list[Rule] = []
    translations: list[Translation] = []
    positions: list[int] = []
    labels: dict[str, None] = {}
    notes: list[str] = []
    digest = hashlib.sha256()
    for path in paths:
        table = _read_table(path, digest, errors, notes)
        shown = display_rule_file(path) if table else path  # rules/<name> for shipped files
        for label, patterns in (table or {}).items():
            if not isinstance(label, str) or not label:
                errors.append(f"{path}: label {label!r}: labels must be non-empty strings")
                continue
            if not isinstance(patterns, list):
                line = _key_line(path, label)
                errors.append(
                    f"{path}:{line}: label {label!r}: expected a list of pattern strings, "
                    f"got {type(patterns).__name__}"
                    if line
                    else f"{path}: label {label!r}: expected a list of pattern strings, "
                    f"got {type(patterns).__name__}"
                )
                continue
            labels.setdefault(label, None)
            for pos, pattern in enumerate(patterns):
                # The error prefix is only formatted for a failing pattern (10,000-rule sets).
                if not isinstance(pattern, str):
                    errors.append(f"{_where(path, label, pos, pattern)}: patterns must be strings")
                    continue
                try:
                    tr = translate(pattern)
                except RustRegexError as exc:
                    errors.append(f"{_where(path, label, pos, pattern)}: {exc}")
                    continue
                rules.append(Rule(len(rules), label, pattern, shown))
                translations.append(tr)
                positions.append(pos)
    if errors:
        raise RulesError(errors)
    return RuleSet(
        rules=rules,
        labels=list(labels),
        files=paths,
        version=digest.hexdigest()[:12],
        translations=translations,
        positions=positions,
        notes=notes,
    )


def _closest_predefined(label: str) -> str | None:
    """The predefined label ``label`` most likely misspells, or None for a deliberate name."""
    if label in PREDEFINED_LABELS:
        return None
    folded = {p.casefold(): p for p in PREDEFINED_LABELS}
    if label.casefold() in folded:  # 'invalidrecipient'
        return folded[label.casefold()]
    close = difflib.get_close_matches(label, PREDEFINED_LABELS, n=1, cutoff=0.85)
    return close[0] if close else None


def label_warnings(ruleset: RuleSet) -> list[str]:
    """One message per label that looks like a misspelled predefined label (``InvalidRecipent``).

    Custom labels are allowed (KumoMTA accepts any name), so these are warnings; a name far from
    every predefined label is taken as deliberate and not reported.
    """
    first_file: dict[str, str] = {}
    for rule in ruleset.rules:
        first_file.setdefault(rule.label, rule.file)
    warnings = list(ruleset.notes)
    for label in ruleset.labels:
        closest = _closest_predefined(label)
        if closest is not None:
            where = first_file.get(label, ", ".join(ruleset.files))
            warnings.append(
                f"{where}: label {label!r} is not a predefined label; did you mean {closest!r}? "
                "(custom labels are allowed)"
            )
    return warnings
